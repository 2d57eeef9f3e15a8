"""The Query/Retrieve SCP of the lean acceptor (PS3.4 Annex C): C-FIND, C-GET and
C-MOVE answered over a :class:`~dicomflow.net.query_retrieve.QueryRetrieveProvider`.

The acceptor (:mod:`dicomflow.net.acceptor`) receives a request's command and its
identifier (at most ``MAX_IDENTIFIER_BYTES``), then hands both here, in the
association's thread; a request's operation runs to its end before the next PDU
is read, except that a C-CANCEL-RQ is looked for (without waiting) between two
responses or sub-operations:

- C-FIND: the identifier is decoded in the context's transfer syntax and checked
  (a known QueryRetrieveLevel for the model, else 0xC000; no value longer than
  ``MAX_VALUE_CHARS`` nor holding a NUL, else 0xA900). Each identifier the
  provider yields goes back at once in a pending (0xFF00) response, trimmed here
  to the keys asked for (those the provider did not return are sent empty), the
  QueryRetrieveLevel, and SpecificCharacterSet: a provider may return more. An
  answer that encodes itself (:class:`~dicomflow.net.query_retrieve.FindAnswer`, the
  engine's) is sent as it encodes, already trimmed; as its dataset if it cannot. Then
  success (0x0000), or 0xFE00 after a C-CANCEL-RQ.
- C-GET: each instance the provider retrieves is read (one at a time) and sent
  in a C-STORE-RQ on the association's storage context for its SOP class on which
  the requestor took the SCP role: as stored if that syntax was accepted, else
  re-encoded in explicit or implicit VR little endian
  (:mod:`dicomflow.net.transcode`), else it fails. A pending response with the
  remaining, completed, failed and warning counts follows each sub-operation.
- C-MOVE: the destination AE title must be known to the provider (else 0xA801);
  the instances go to it over a new association (:func:`dicomflow.net.requestor.send`,
  TLS if its address says so), a pending response after each.

A retrieval ends with 0x0000 (all sent), 0xB000 (some failed or had warnings,
with the Failed SOP Instance UID List), 0xA702 (all failed) or 0xFE00
(cancelled). Provider errors become statuses as :mod:`dicomflow.net.query_retrieve`
says, with one log line naming the peer; errors of the association itself
(lost, protocol) go up to the acceptor, which ends it.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Protocol, TypeVar

from pydicom import DataElement, Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

from dicomflow.address import Address
from dicomflow.dicom import part10
from dicomflow.errors import (
    InvalidQueryDataset,
    OperationCancelled,
    PeerUnreachableError,
    ProtocolError,
    QueryKeyError,
    QueryRetrieveRefused,
    UnknownMoveDestinationError,
)
from dicomflow.logs import escaped
from dicomflow.net import pdu, requestor
from dicomflow.net.pdu import (
    C_CANCEL_RQ,
    C_FIND_RQ,
    C_FIND_RSP,
    C_GET_RQ,
    C_GET_RSP,
    C_MOVE_RQ,
    C_MOVE_RSP,
    C_STORE_RSP,
    MESSAGE_ID_RESPONDED_TO,
    MOVE_DESTINATION,
)
from dicomflow.net.query_retrieve import (
    SOP_CLASSES,
    FindAnswer,
    InformationModel,
    Operation,
    QueryRequest,
    QueryRetrieveProvider,
    RetrievedInstance,
)
from dicomflow.net.transcode import fitted

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_IDENTIFIER_BYTES = 1 << 20
"""A C-FIND, C-GET or C-MOVE identifier longer than this aborts its association."""
MAX_VALUE_CHARS = 1024
"""A key's value longer than this (a UID list included) is refused with 0xA900."""
MAX_FAILURES_LOGGED = 10
"""Instances of one C-GET that cannot be sent are logged one by one up to this many."""
SUCCESS, CANCELLED, PENDING = 0x0000, 0xFE00, 0xFF00
SOME_FAILED, ALL_FAILED, UNKNOWN_DESTINATION = 0xB000, 0xA702, 0xA801
INVALID_IDENTIFIER, UNABLE_TO_PROCESS, SOP_CLASS_NOT_SUPPORTED = 0xA900, 0xC000, 0x0122
WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})
REQUESTS = {C_FIND_RQ: Operation.FIND, C_GET_RQ: Operation.GET, C_MOVE_RQ: Operation.MOVE}
RESPONSES = {Operation.FIND: C_FIND_RSP, Operation.GET: C_GET_RSP, Operation.MOVE: C_MOVE_RSP}
LEVELS = {
    InformationModel.PATIENT_ROOT: ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    InformationModel.STUDY_ROOT: ("STUDY", "SERIES", "IMAGE"),
}
QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
FAILED_SOP_INSTANCE_UID_LIST = 0x00080058


class Link(Protocol):
    """What an operation needs of the association it runs on."""

    ip: str
    calling_ae_title: str

    def send_message(
        self, context_id: int, command: bytes, data: bytes | memoryview, hold: bool = False
    ) -> None:
        """Send a command set and its data set (none if empty), after those held;
        ``hold``: it may wait to go out with the next message (not past a bound)."""

    def next_command(self, wait: bool) -> tuple[int, dict[int, bytes]] | None:
        """The next command set the peer sends (a response or a C-CANCEL-RQ); None if
        none has arrived and not ``wait``."""

    def storage_contexts(self, sop_class_uid: str) -> dict[str, int]:
        """Transfer syntax -> context id of the storage contexts of ``sop_class_uid`` on
        which the peer takes the SCP role."""


@dataclass(frozen=True)
class Request:
    """A C-FIND, C-GET or C-MOVE-RQ as received: its command and identifier bytes."""

    context_id: int
    sop_class_uid: str
    transfer_syntax: str
    command: dict[int, bytes]
    data: bytes | bytearray

    @property
    def message_id(self) -> int:
        return pdu.us(self.command, pdu.MESSAGE_ID)


@dataclass
class Counts:
    """The sub-operations of a retrieval (PS3.4 C.4.2.1.6): counted as they complete."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return self.remaining, self.completed, self.failed, self.warning

    def done(self, sop_instance_uid: str, status: int | None) -> None:
        self.remaining -= 1
        if status == SUCCESS:
            self.completed += 1
        elif status in WARNING_STATUSES:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def final_status(self) -> int:
        if not self.failed and not self.warning:
            return SUCCESS
        return ALL_FAILED if not self.completed and not self.warning else SOME_FAILED


class QueryRetrieveSCP:
    """C-FIND, C-GET and C-MOVE of one association, over ``provider``."""

    def __init__(self, provider: QueryRetrieveProvider, link: Link, ae_title: str) -> None:
        self.provider = provider
        self.link = link
        self.ae_title = ae_title
        self._message_id = 0
        self._unsent = 0  # instances of the C-GET under way that could not be sent

    def handle(self, field_: int, request: Request) -> None:
        """Answer one request to its final response."""
        operation = REQUESTS[field_]
        try:
            query = self._query(operation, request)
            if operation is Operation.FIND:
                self._find(request, query)
            else:
                self._retrieve(operation, request, query)
        except QueryRetrieveRefused as exc:
            self._refused(operation, request, exc)

    # -- requests ------------------------------------------------------------------------

    def _query(self, operation: Operation, request: Request) -> QueryRequest:
        served = SOP_CLASSES.get(request.sop_class_uid)
        if served is None or served[1] is not operation:
            raise QueryRetrieveRefused(
                SOP_CLASS_NOT_SUPPORTED, f"{operation} on {request.sop_class_uid}"
            )
        model = served[0]
        identifier = decoded(request.data, request.transfer_syntax)
        level = str(identifier.get("QueryRetrieveLevel", "") or "")
        if level not in LEVELS[model]:
            shown = escaped(repr(level[:16]))
            raise QueryRetrieveRefused(
                UNABLE_TO_PROCESS, f"QueryRetrieveLevel {shown} is not one of {model}'s"
            )
        checked(identifier)
        return QueryRequest(model, identifier, self.link.calling_ae_title, self.link.ip)

    def _refused(self, operation: Operation, request: Request, exc: QueryRetrieveRefused) -> None:
        logger.warning(
            "C-%s from %s at %s: %s; status 0x%04X",
            operation,
            escaped(self.link.calling_ae_title),
            self.link.ip,
            escaped(exc),
            exc.status,
        )
        self._respond(RESPONSES[operation], request, exc.status, comment=str(exc))

    def _respond(
        self,
        field_: int,
        request: Request,
        status: int,
        data: bytes = b"",
        counts: Counts | None = None,
        comment: str = "",
        hold: bool = False,
    ) -> None:
        command = pdu.query_response(
            field_,
            request.message_id,
            request.sop_class_uid,
            status,
            with_dataset=bool(data),
            counts=counts.as_tuple() if counts is not None else None,
            error_comment=comment,
        )
        self.link.send_message(request.context_id, command, data, hold)

    def _cancelled(self, request: Request) -> bool:
        """Whether a C-CANCEL-RQ for ``request`` has arrived (without waiting for one)."""
        command = self.link.next_command(wait=False)
        if command is None:
            return False
        return self._is_cancel(command[1], request)

    @staticmethod
    def _is_cancel(command: dict[int, bytes], request: Request) -> bool:
        if pdu.us(command, pdu.COMMAND_FIELD) != C_CANCEL_RQ:
            raise ProtocolError("a request while a query/retrieve operation is under way")
        return pdu.us(command, MESSAGE_ID_RESPONDED_TO) == request.message_id

    # -- C-FIND --------------------------------------------------------------------------

    def _find(self, request: Request, query: QueryRequest) -> None:
        """One pending response per match, as the provider yields them; never a list.
        The first goes at once; the others may wait for a few more to go out with
        (a system call per answer costs as much as the answer), the final one sends all."""
        implicit = request.transfer_syntax == ImplicitVRLittleEndian
        matches = provided(lambda: iter(self.provider.find(query)))
        hold = False
        while (found := provided(lambda: next(matches, None))) is not None:
            if self._cancelled(request):
                self._respond(C_FIND_RSP, request, CANCELLED)
                return
            data = provided(lambda: answer_bytes(found, query.identifier, implicit))
            self._respond(C_FIND_RSP, request, PENDING, data, hold=hold)
            hold = True
        self._respond(C_FIND_RSP, request, SUCCESS)

    # -- C-GET and C-MOVE ----------------------------------------------------------------

    def _retrieve(self, operation: Operation, request: Request, query: QueryRequest) -> None:
        address = self._destination(request) if operation is Operation.MOVE else None
        instances = provided(lambda: list(self.provider.retrieve(query)))
        counts = Counts(remaining=len(instances))
        field_ = RESPONSES[operation]
        try:
            if address is None:
                self._get(request, instances, counts)
            else:
                self._move(request, address, instances, counts)
        except OperationCancelled:
            self._final(field_, request, counts, CANCELLED)
            return
        self._final(field_, request, counts, counts.final_status())

    def _final(self, field_: int, request: Request, counts: Counts, status: int) -> None:
        data = b""
        if counts.failed_uids:
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = counts.failed_uids
            implicit = request.transfer_syntax == ImplicitVRLittleEndian
            data = encode(failed, implicit, True) or b""
        if status != SUCCESS:
            logger.warning(
                "C-%s from %s at %s: %d sent, %d failed, %d with warnings; status 0x%04X",
                "GET" if field_ == C_GET_RSP else "MOVE",
                escaped(self.link.calling_ae_title),
                self.link.ip,
                counts.completed,
                counts.failed,
                counts.warning,
                status,
            )
        # A cancelled retrieval says how many remain; a finished one has none left.
        if status != CANCELLED:
            counts = Counts(0, counts.completed, counts.failed + counts.remaining, counts.warning)
        self._respond(field_, request, status, data, counts)

    def _destination(self, request: Request) -> Address:
        title = pdu.ae_text(request.command.get(MOVE_DESTINATION, b""))
        address = provided(lambda: self.provider.destination(title))
        if address is None:
            raise QueryRetrieveRefused(
                UNKNOWN_DESTINATION, f"move destination {title!r} is not known"
            )
        return address

    def _get(self, request: Request, instances: list[RetrievedInstance], counts: Counts) -> None:
        self._unsent = 0
        for instance in instances:
            if self._cancelled(request):
                raise OperationCancelled
            status = self._store(request, instance)
            counts.done(instance.sop_instance_uid, status)
            if counts.remaining:
                self._respond(C_GET_RSP, request, PENDING, counts=counts)

    def _store(self, request: Request, instance: RetrievedInstance) -> int | None:
        """One C-STORE sub-operation: its status, None if the instance could not be sent."""
        try:
            accepted = self.link.storage_contexts(instance.sop_class_uid)
            if not accepted:
                raise ValueError("no storage context on which the peer is the SCP")
            context_id, data = fitted(instance.read(), accepted)
        except Exception as exc:  # reading and re-encoding raise many kinds
            self._unsent += 1
            if self._unsent > MAX_FAILURES_LOGGED:
                return None  # the final response's log line counts the rest
            logger.warning(
                "C-GET from %s at %s: cannot send %s: %s",
                escaped(self.link.calling_ae_title),
                self.link.ip,
                escaped(instance.sop_instance_uid),
                escaped(exc),
            )
            return None
        self._message_id = self._message_id % 0xFFFF + 1
        message_id = self._message_id
        command = pdu.c_store_rq(message_id, instance.sop_class_uid, instance.sop_instance_uid)
        self.link.send_message(context_id, command, data)
        return self._store_status(request, message_id)

    def _store_status(self, request: Request, message_id: int) -> int:
        """The C-STORE-RSP's status; a C-CANCEL-RQ meanwhile is noted for later."""
        cancelled = False
        while True:
            _, command = self.link.next_command(wait=True) or (0, {})
            if pdu.us(command, pdu.COMMAND_FIELD) == C_CANCEL_RQ:
                cancelled = cancelled or self._is_cancel(command, request)
                continue
            status = pdu.response_status(command, C_STORE_RSP, message_id)
            if cancelled:
                raise OperationCancelled
            return status

    def _move(
        self,
        request: Request,
        address: Address,
        instances: list[RetrievedInstance],
        counts: Counts,
    ) -> None:
        report = requestor.SendReport()

        def progress(done: int) -> None:
            for instance in instances[done - 1 : done]:
                name = instance.sop_instance_uid
                counts.done(name, 0x0000 if name not in report.failed else None)
            if self._cancelled(request):
                raise OperationCancelled
            if counts.remaining:
                self._respond(C_MOVE_RSP, request, PENDING, counts=counts)

        try:
            requestor.send(address, instances, self.ae_title, progress, report=report)
        except ProtocolError:
            raise  # our association with the requestor (ValueErrors below are the send's)
        except (PeerUnreachableError, ValueError) as exc:  # unreachable, TLS files, contexts
            logger.warning("C-MOVE to %s: %s", address, escaped(exc))
            for instance in instances[len(instances) - counts.remaining :]:
                counts.done(instance.sop_instance_uid, None)


def provided(call: Callable[[], T]) -> T:
    """What a provider call returns; its errors raised as :class:`QueryRetrieveRefused`."""
    try:
        return call()
    except (ProtocolError, OSError):
        raise
    except UnknownMoveDestinationError as exc:
        raise QueryRetrieveRefused(UNKNOWN_DESTINATION, str(exc)) from exc
    except (QueryKeyError, InvalidQueryDataset) as exc:
        raise QueryRetrieveRefused(INVALID_IDENTIFIER, str(exc)) from exc
    except Exception as exc:  # the provider's failure is the request's, not the association's
        logger.error("query/retrieve provider failed: %s: %s", type(exc).__name__, escaped(exc))
        raise QueryRetrieveRefused(UNABLE_TO_PROCESS, "the archive could not answer") from exc


def decoded(data: bytes | bytearray, syntax: str) -> Dataset:
    """The identifier, every element of it parsed (a malformed one raises here, not later).

    Raises:
        QueryRetrieveRefused: 0xA900 if it cannot be decoded.
    """
    implicit = syntax == ImplicitVRLittleEndian
    try:
        _whole(data, implicit)
        identifier = decode(BytesIO(bytes(data)), implicit, True)
        _parse_all(identifier)
    except Exception as exc:  # pydicom raises many kinds on malformed bytes
        raise QueryRetrieveRefused(
            INVALID_IDENTIFIER, f"the identifier cannot be decoded ({exc})"
        ) from exc
    return identifier


def _whole(data: bytes | bytearray, implicit: bool) -> None:
    """Refuse an identifier whose elements run past its end, or with bytes after them
    (pydicom reads a value cut short as it is)."""
    end = 0
    for element in part10.walk(data, implicit=implicit):
        if element.length == part10.UNDEFINED_LENGTH:
            return  # a sequence: pydicom checks its items
        if element.end > len(data):
            raise ValueError(f"({element.group:04X},{element.number:04X}) runs past its end")
        end = element.end
    if end != len(data):
        raise ValueError(f"{len(data) - end} bytes after its last element")


def _parse_all(dataset: Dataset) -> None:
    for element in dataset:  # iterating converts raw elements
        if element.VR == "SQ":
            for item in element.value:
                _parse_all(item)


def checked(identifier: Dataset) -> None:
    """Refuse (0xA900) a value longer than ``MAX_VALUE_CHARS`` or holding a NUL."""
    for element in identifier:
        if element.VR == "SQ" or element.value is None:
            continue
        text = str(element.value)
        name = element.keyword or str(element.tag)
        if len(text) > MAX_VALUE_CHARS:
            raise QueryRetrieveRefused(
                INVALID_IDENTIFIER, f"{name} is longer than {MAX_VALUE_CHARS}"
            )
        if "\x00" in text.rstrip("\x00"):
            raise QueryRetrieveRefused(INVALID_IDENTIFIER, f"{name} holds a NUL character")


def answer_bytes(found: Dataset | FindAnswer, identifier: Dataset, implicit: bool) -> bytes:
    """A provider's answer as sent: its own encoding when it has one, else trimmed and
    encoded by pydicom."""
    if isinstance(found, Dataset):
        return encoded_match(found, identifier, implicit)
    return found.encoded(implicit) or encoded_match(found.dataset(), identifier, implicit)


def encoded_match(found: Dataset, identifier: Dataset, implicit: bool) -> bytes:
    """A match trimmed to the keys asked for, encoded for the response (a provider
    yielding what cannot be encoded fails the request, not the association)."""
    data = encode(trimmed(found, identifier), implicit, True)
    if data is None:
        raise ValueError("a match cannot be encoded")
    return data


def trimmed(found: Dataset, identifier: Dataset) -> Dataset:
    """The keys of ``identifier`` with ``found``'s values (empty where it has none),
    the QueryRetrieveLevel asked for and the SpecificCharacterSet."""
    answer = Dataset()
    for element in identifier:
        if element.tag in found:
            answer.add(found[element.tag])
        else:
            empty = Sequence() if element.VR == "SQ" else None
            answer.add(DataElement(element.tag, element.VR, empty))
    answer.QueryRetrieveLevel = identifier.QueryRetrieveLevel
    for source in (found, identifier):
        if SPECIFIC_CHARACTER_SET in source:
            answer.add(source[SPECIFIC_CHARACTER_SET])
            break
    return answer
