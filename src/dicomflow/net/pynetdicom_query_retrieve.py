"""C-FIND, C-MOVE and C-GET on the pynetdicom receiver, over a
:class:`~dicomflow.net.query_retrieve.QueryRetrieveProvider`.

pynetdicom speaks the protocol (pending responses, C-CANCEL, the C-STORE
sub-operations and their counts); these handlers ask the provider and turn what
it raises into the statuses :mod:`dicomflow.net.query_retrieve` names, with one
log line, never a traceback sent to pynetdicom's own handler guard.
"""

import logging
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from pydicom import Dataset, dcmread
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomflow import tls
from dicomflow.address import Address
from dicomflow.dicom.keys import shorten
from dicomflow.errors import (
    InvalidQueryDataset,
    QueryKeyError,
    TLSConfigurationError,
    UnknownMoveDestinationError,
    UnknownQueryLevelError,
)
from dicomflow.logs import escaped
from dicomflow.net.contexts import ACCEPTED_TRANSFER_SYNTAXES
from dicomflow.net.query_retrieve import (
    SOP_CLASSES,
    QueryRequest,
    QueryRetrieveProvider,
    RetrievedInstance,
)

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
PENDING = 0xFF00
CANCELLED = 0xFE00
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNKNOWN_DESTINATION = 0xA801
UNABLE_TO_PROCESS = 0xC000
MAXIMUM_CONTEXTS = 128  # what one association may propose (PS3.8 9.3.2.2)

Destination = tuple[str | None, int | None] | tuple[str, int, dict[str, Any]]


def query_retrieve_contexts() -> list[PresentationContext]:
    """The Q/R information models' SOP classes, in the uncompressed transfer syntaxes."""
    return [build_context(uid, ACCEPTED_TRANSFER_SYNTAXES[:3]) for uid in SOP_CLASSES]


def failure_status(exc: Exception, request: str) -> int:
    """The final status of a request the provider raised ``exc`` for, logged."""
    if isinstance(exc, UnknownQueryLevelError):
        status = UNABLE_TO_PROCESS
    elif isinstance(exc, UnknownMoveDestinationError):
        status = UNKNOWN_DESTINATION
    elif isinstance(exc, InvalidQueryDataset | QueryKeyError):
        status = IDENTIFIER_DOES_NOT_MATCH
    else:
        status = UNABLE_TO_PROCESS
    logger.warning("%s failed (0x%04X): %s", request, status, shorten(str(exc), 300))
    return status


class QueryRetrieveHandlers:
    """The EVT_C_FIND/MOVE/GET handlers of one receiver; ``client_tls``: the node's files
    for C-MOVE to destinations that speak DICOM TLS."""

    def __init__(self, provider: QueryRetrieveProvider, client_tls: tls.TLSFiles | None) -> None:
        self.provider = provider
        self.client_tls = client_tls

    def handlers(self) -> list[tuple[Any, Any]]:
        return [
            (evt.EVT_C_FIND, self.find),
            (evt.EVT_C_GET, self.get),
            (evt.EVT_C_MOVE, self.move),
        ]

    def find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        where = _described(event, "C-FIND")
        try:
            for answer in self.provider.find(_request(event)):
                if event.is_cancelled:
                    yield CANCELLED, None
                    return
                yield PENDING, answer if isinstance(answer, Dataset) else answer.dataset()
        except Exception as exc:
            yield failure_status(exc, where), None
            return
        yield SUCCESS, None

    def get(self, event: Any) -> Iterator[int | tuple[int, Dataset | None]]:
        where = _described(event, "C-GET")
        try:
            instances = self.provider.retrieve(_request(event))
        except Exception as exc:
            yield 1  # pynetdicom takes a final status only after the count
            yield failure_status(exc, where), None
            return
        yield len(instances)
        yield from _sub_operations(event, instances)

    def move(self, event: Any) -> Iterator[Destination | int | tuple[int, Dataset | None]]:
        where = _described(event, "C-MOVE")
        title = _text(event.move_destination)
        address = self.provider.destination(title)
        try:
            options = self._tls_options(address) if address is not None else {}
        except TLSConfigurationError as exc:
            logger.warning("%s refused (0xA801): %s", where, shorten(str(exc), 300))
            address = None
        if address is None:
            logger.warning("%s refused (0xA801): destination %s", where, escaped(repr(title)))
            yield None, None  # pynetdicom answers 0xA801
            return
        try:
            instances = self.provider.retrieve(_request(event))
        except Exception as exc:
            # pynetdicom takes a status only after a destination and a count
            yield address.ip, address.port, {"contexts": _store_contexts([]), **options}
            yield 1
            yield failure_status(exc, where), None
            return
        yield address.ip, address.port, {"contexts": _store_contexts(instances), **options}
        yield len(instances)
        yield from _sub_operations(event, instances)

    def _tls_options(self, address: Address) -> dict[str, Any]:
        """How pynetdicom secures the association to a destination that speaks TLS."""
        if not address.tls:
            return {}
        return {"tls_args": (tls.client_context(self.client_tls), address.ip)}


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value or "").strip()


def _request(event: Any) -> QueryRequest:
    """The request, its identifier decoded (:class:`InvalidQueryDataset` if it cannot be)."""
    model = SOP_CLASSES[str(event.context.abstract_syntax)][0]
    try:
        identifier = event.identifier
    except Exception as exc:
        raise InvalidQueryDataset(f"The identifier cannot be decoded: {exc}") from exc
    return QueryRequest(
        model=model,
        identifier=identifier,
        calling_ae_title=str(event.assoc.requestor.ae_title).strip(),
        peer_ip=str(event.assoc.requestor.address),
    )


def _described(event: Any, operation: str) -> str:
    title = str(event.assoc.requestor.ae_title).strip()
    return f"{operation} from {escaped(title)} ({event.assoc.requestor.address})"


def _sub_operations(
    event: Any, instances: list[RetrievedInstance]
) -> Iterator[tuple[int, Dataset | None]]:
    """One pending status and instance per C-STORE, read only when it is sent."""
    for instance in instances:
        if event.is_cancelled:
            yield CANCELLED, None
            return
        yield PENDING, _dataset(instance)


def _dataset(instance: RetrievedInstance) -> Dataset:
    """The instance, decoded; if it cannot be read, a stand-in that pynetdicom fails to
    send, so that it is counted and listed as a failed sub-operation."""
    try:
        return dcmread(BytesIO(instance.read()))
    except Exception as exc:
        logger.warning(
            "instance %s cannot be read for a retrieval: %s",
            instance.sop_instance_uid,
            shorten(str(exc), 300),
        )
        stand_in = Dataset()
        stand_in.SOPInstanceUID = instance.sop_instance_uid
        return stand_in


def _store_contexts(instances: list[RetrievedInstance]) -> list[PresentationContext]:
    """A context per SOP class sent, in the transfer syntaxes the instances are held in."""
    syntaxes: dict[str, set[str]] = {}
    for instance in instances:
        syntaxes.setdefault(instance.sop_class_uid, set()).add(instance.transfer_syntax)
    if len(syntaxes) > MAXIMUM_CONTEXTS:
        logger.warning("retrieval of %d SOP classes: the first 128 are sent", len(syntaxes))
    contexts = [
        build_context(sop_class, sorted(transfer_syntaxes))
        for sop_class, transfer_syntaxes in list(syntaxes.items())[:MAXIMUM_CONTEXTS]
    ]
    return contexts or [build_context(Verification)]
