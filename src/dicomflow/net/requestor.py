"""The SCU: C-ECHO and C-STORE to a peer over one association, in one thread.

Exports to endpoints and ``dicomflow send`` use it. pynetdicom's requestor
spends about 1.5 ms of Python on each instance (it decodes each file with
pydicom to find its UIDs, encodes each command set with pydicom, and passes
every PDU through a state machine and two threads), more than the peer needs
to store it. Like the acceptor (:mod:`dicomflow.net.acceptor`), this requestor
leaves its PDUs to dicomflow's own codec (:mod:`dicomflow.net.pdu`), and the
reading of Part-10 files to :mod:`dicomflow.dicom.part10`:

1. Association: for each SOP class of the sources, one presentation context
   per transfer syntax the sources have, and one each for explicit and
   implicit VR little endian, so that an uncompressed instance can be
   re-encoded for a peer that takes only one of them; with a user ``identity``
   (PS3.7 D.3.3.7: a username and, if given, a passcode), its sub-item too,
   asking for a positive response unless told not to (a peer that gives none
   is named in a warning and used all the same, as PS3.7 allows). A rejection, a closed
   connection or no answer within ``ACSE_TIMEOUT_S`` raise
   :class:`~dicomflow.errors.PeerUnreachableError` naming the peer.
2. Each Part-10 file is read whole (one over ``STREAM_BYTES``: its head, then
   its dataset while it is sent); its file meta gives the transfer syntax, its
   dataset (else its file meta) the SOP UIDs. The dataset goes out as it is in the
   file when the peer accepted that syntax, re-encoded by pydicom when it
   accepted only another uncompressed one (a compressed instance's pixel data
   decoded first, with pylibjpeg), and not at all otherwise (that instance is
   reported failed and unsendable, with the reason; the next one is sent). The
   command and the dataset leave in one ``sendmsg``, in P-DATA-TF PDUs no
   longer than the peer's maximum.
3. Each C-STORE waits for its response (no asynchronous operations). Success
   and warning statuses count as sent. An A-ABORT, a closed connection, a
   protocol error or ``DIMSE_TIMEOUT_S`` without a response end the
   association; that instance is reported failed (so the outbox sends it
   again), never as sent, and the next one goes over a new association. After
   ``MAX_LOSSES_IN_A_ROW`` losses in a row, or if the peer no longer accepts
   an association, the rest are reported failed without being tried.
4. A-RELEASE-RQ; the A-RELEASE-RP is awaited for up to ``ACSE_TIMEOUT_S``.

DICOM TLS (PS3.15 Annex B, BCP 195 through :mod:`dicomflow.tls`): with ``tls`` files, or
to an :class:`Address` with ``tls``, the connection is wrapped and its handshake done
within ``ACSE_TIMEOUT_S`` before the association request. A handshake that fails (the
peer's certificate is not trusted, it wants a client certificate we do not have, it does
not speak TLS) raises :class:`~dicomflow.errors.PeerUnreachableError` naming the peer and
why. Over TLS the buffers of a message are written in batches
(:func:`dicomflow.net.pdu.send_views`): an ``ssl.SSLSocket`` has no ``sendmsg``.

Query/retrieve (PS3.4 C): :func:`find` yields each C-FIND match as it arrives (an
identifier over ``MAX_IDENTIFIER_BYTES`` is a protocol error; at its ``limit`` a
C-CANCEL-RQ ends the query); :func:`move_report` follows a C-MOVE's responses and
keeps its sub-operation counts (:func:`move` returns their statuses); :func:`get`
proposes storage contexts with the SCP role (PS3.7 D.3.3.4) and answers the C-STORE
sub-operations on the same association, each instance kept (a durable file, or a
callback) before its success status (:mod:`dicomflow.net.sub_operations`).
"""

import contextlib
import copy
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import encode
from pynetdicom.presentation import StoragePresentationContexts

from dicomflow import audit
from dicomflow import tls as dicom_tls
from dicomflow.address import Address
from dicomflow.dicom import part10
from dicomflow.errors import (
    AssociationLost,
    CancelIgnoredError,
    InvalidKeyError,
    PeerUnreachableError,
    ProtocolError,
    QueryRetrieveStatusError,
    TranscodeError,
)
from dicomflow.net import pdu, transcode
from dicomflow.net.pdu import (
    ABORT,
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    ASSOCIATE_RQ,
    C_ECHO_RSP,
    C_MOVE_RSP,
    C_STORE_RSP,
    P_DATA_TF,
    RELEASE_RP,
    RELEASE_RQ,
    VERIFICATION,
)
from dicomflow.net.query_retrieve import (
    SOP_CLASSES,
    InformationModel,
    Operation,
    RetrievedInstance,
)
from dicomflow.net.socket import tune_requesting_socket
from dicomflow.net.sub_operations import (
    OUT_OF_RESOURCES,
    CallbackStore,
    FolderStore,
    IncomingInstance,
    InstanceStore,
    Receipt,
    RetrieveReport,
    refusal,
    status_name,
)
from dicomflow.net.user_identity import UserIdentity, shown
from dicomflow.tls import TLSFiles, peer_subject

logger = logging.getLogger(__name__)

DEFAULT_CALLING_AE_TITLE = "DICOMFLOW"
MAX_LOSSES_IN_A_ROW = 3
"""After this many instances in a row lost their association, a send stops trying."""
MAX_CONTEXTS = 128
CONNECT_TIMEOUT_S = 10.0
ACSE_TIMEOUT_S = 30.0
DIMSE_TIMEOUT_S = 60.0
MAXIMUM_PDU = 16 << 20
"""The longest P-DATA-TF PDU we take (advertised), and the longest we send to
a peer that sets no limit."""
MAX_RESPONSE_PDU = 1 << 20
"""Responses and association PDUs are small: a longer one is a protocol error."""
SUCCESS_STATUSES = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
PENDING_STATUSES = frozenset({0xFF00, 0xFF01})
UNCOMPRESSED = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
"""Syntaxes pydicom reads and writes without a codec: an instance in one of
them can go out in the first two."""
STREAM_BYTES = 64 << 20
"""A file larger than this is not read whole: its dataset is read while it is sent."""
STREAM_CHUNK = 4 << 20
"""What is read of a streamed file at a time."""
Source = Path | Dataset | RetrievedInstance
"""A Part-10 file, a dataset, or an archived instance's Part-10 bytes (read when sent)."""
MAX_IDENTIFIER_BYTES = 1 << 20
"""A C-FIND-RSP identifier longer than this is a protocol error (a hostile peer's)."""
MAX_AFTER_CANCEL = 10_000
CANCEL_DRAIN_S = 5.0
"""After a C-CANCEL-RQ, responses already on their way are read (and dropped) until the
final one, for at most this many responses and seconds; a peer that goes on past that
is aborted, and the query keeps the matches it asked for (a peer pipelines its answers,
and pynetdicom's SCP sometimes misses a cancel altogether)."""
GET_TRANSFER_SYNTAXES = (
    str(ExplicitVRLittleEndian),
    str(ImplicitVRLittleEndian),
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE lossless
)
"""A C-GET's storage contexts take these: instances are written as they come."""
GET_STORAGE_CLASSES = tuple(str(context.abstract_syntax) for context in StoragePresentationContexts)
"""The storage SOP classes a C-GET proposes by default (pynetdicom's list, cut to fit
the 128 presentation contexts of an association with the C-GET one)."""
_process_tls = TLSFiles()
"""The files an Address with ``tls`` is sent to with when a send names none."""


def use_client_tls(files: TLSFiles) -> None:
    """Send to TLS peers with ``files`` when a send names none (a worker process sets the
    node's own, for the sends of pipeline code); by default the system's trust store and
    no client certificate."""
    global _process_tls
    _process_tls = files


def client_tls_context(address: Address, files: TLSFiles | None) -> ssl.SSLContext | None:
    """The context to send to ``address`` with: with ``files``, or when the address speaks
    TLS (then with :func:`use_client_tls`'s files); None for plain DICOM.

    Raises:
        TLSConfigurationError: a file cannot be used (the message names it).
    """
    if files is None and not address.tls:
        return None
    return dicom_tls.client_context(files or _process_tls)


@dataclass
class SendReport:
    """What happened to each instance of one send."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unsendable: set[str] = field(default_factory=set)
    """The failed ones no retry would send: unparsable, or compressed for a peer that
    takes only uncompressed syntaxes and not decodable."""

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Instance:
    """One source, ready to go: its UIDs, its transfer syntax and its dataset bytes."""

    sop_class: str
    sop_instance: str
    syntax: str
    data: bytes | memoryview
    dataset: Dataset | None = None
    path: Path | None = None
    """Set for a file too large to hold: its dataset is read while it is sent."""
    offset: int = 0
    length: int = 0

    @property
    def size(self) -> int:
        return len(self.data) if self.path is None else self.length

    def pieces(self) -> Iterator[memoryview]:
        """The dataset's bytes: at once, or ``STREAM_CHUNK`` at a time from its file."""
        if self.path is None:
            yield memoryview(self.data)
            return
        buffer = memoryview(bytearray(STREAM_CHUNK))
        with self.path.open("rb", buffering=0) as file:
            file.seek(self.offset)
            remaining = self.length
            while remaining:
                count = file.readinto(buffer[: min(remaining, STREAM_CHUNK)])
                if not count:
                    raise OSError(f"{self.path} got shorter while it was being sent")
                remaining -= count
                yield buffer[:count]


def echo(
    address: Address,
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    tls: TLSFiles | None = None,
    *,
    identity: UserIdentity | None = None,
) -> None:
    """Send a C-ECHO (over TLS with ``tls``, or to an address with ``tls``; presenting
    ``identity``, if given); raise :class:`PeerUnreachableError` unless it succeeds."""
    association = _Association.open(
        address,
        calling_ae_title,
        [(VERIFICATION, str(ImplicitVRLittleEndian))],
        client_tls_context(address, tls),
        identity,
    )
    try:
        status: int | None = association.echo()
    except (AssociationLost, ProtocolError, OSError) as exc:
        logger.warning("C-ECHO to %s: %s", address, exc)
        association.abort()
        status = None
    else:
        association.release()
    if status != 0x0000:
        text = "none (no response)" if status is None else f"0x{status:04X}"
        raise PeerUnreachableError(f"C-ECHO to {address} failed (status {text}).")


def send(
    address: Address,
    sources: Sequence[Source],
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    on_progress: Callable[[int], None] | None = None,
    tls: TLSFiles | None = None,
    *,
    identity: UserIdentity | None = None,
    report: SendReport | None = None,
) -> SendReport:
    """Send every source (Part-10 file, dataset or archived instance) over one association,
    and over a new one after an instance lost it (see :class:`_Associations`); over TLS
    with ``tls``, or to an address with ``tls``; each association presents ``identity``,
    if given (``UserIdentity.of(username, password)``). The outcomes go to ``report``
    (a new one by default), where ``on_progress`` may read them as they come.

    Raises:
        PeerUnreachableError: the peer cannot be associated with (TLS handshake included).
        TLSConfigurationError: a file of ``tls`` cannot be used.
    """
    report = report if report is not None else SendReport()
    if not sources:
        return report
    proposals = _contexts_for(sources)
    context = client_tls_context(address, tls)
    # Without one readable source there is nothing to associate for: each fails in _store_one.
    associations = _Associations(
        partial(_Association.open, address, calling_ae_title, proposals, context, identity)
    )
    if proposals:
        associations.open()
    try:
        for index, source in enumerate(sources):
            name = _name(source)
            association = associations.get() if proposals else None
            if associations.given_up is not None:
                report.failed[name] = associations.given_up
            else:
                associations.after(_store_one(association, source, name, report))
            if on_progress is not None:
                on_progress(index + 1)
    finally:
        associations.close()
    return report


def move(
    address: Address,
    identifier: Dataset,
    destination_ae_title: str,
    information_model: str,
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    *,
    tls: TLSFiles | None = None,
    identity: UserIdentity | None = None,
    on_progress: Callable[[RetrieveReport], None] | None = None,
) -> list[int]:
    """Send a C-MOVE-RQ asking the peer to C-STORE what ``identifier`` matches to
    ``destination_ae_title``; return the statuses of its responses, the final one last
    (:func:`move_report` returns the counts too; ``on_progress`` sees them after each
    response).

    Raises:
        PeerUnreachableError: if the peer cannot be associated with, or the association
            ends before the final response.
    """
    report = move_report(
        address,
        identifier,
        destination_ae_title,
        information_model,
        calling_ae_title,
        tls=tls,
        identity=identity,
        on_progress=on_progress,
    )
    return report.statuses


def find(
    address: Address,
    identifier: Dataset,
    model: InformationModel = InformationModel.STUDY_ROOT,
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    tls: TLSFiles | None = None,
    *,
    identity: UserIdentity | None = None,
    limit: int | None = None,
) -> Iterator[Dataset]:
    """Send a C-FIND-RQ in ``model`` and yield each pending response's identifier as it
    arrives (one at a time: a query matching a million entities is never one list).
    Each identifier is at most ``MAX_IDENTIFIER_BYTES``. After ``limit`` identifiers a
    C-CANCEL-RQ ends the query. The association opens at the first ``next()``.

    Raises:
        PeerUnreachableError: the peer cannot be associated with, or the association
            ends before the final response.
        QueryRetrieveStatusError: the final status is a failure (named).
        ProtocolError: an identifier is too long or cannot be decoded.
    """
    sop_class = sop_class_of(model, Operation.FIND)
    association = _Association.open(
        address,
        calling_ae_title,
        [(sop_class, str(ImplicitVRLittleEndian))],
        client_tls_context(address, tls),
        identity,
    )
    with _closing(association, "C-FIND"):
        yield from association.find(identifier, limit)


def move_report(
    address: Address,
    identifier: Dataset,
    destination_ae_title: str,
    information_model: str,
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    *,
    tls: TLSFiles | None = None,
    identity: UserIdentity | None = None,
    on_progress: Callable[[RetrieveReport], None] | None = None,
) -> RetrieveReport:
    """:func:`move`, returning the peer's counts of completed, failed, warning and
    remaining sub-operations and its final status (a failure does not raise: see
    ``report.ok`` and :func:`check_report`)."""
    proposals = [(information_model, str(ImplicitVRLittleEndian))]
    context = client_tls_context(address, tls)
    association = _Association.open(address, calling_ae_title, proposals, context, identity)
    with _closing(association, "C-MOVE"):
        return association.retrieve_move(identifier, destination_ae_title, on_progress)


def get(
    address: Address,
    identifier: Dataset,
    model: InformationModel,
    destination: str | os.PathLike[str] | Callable[[bytes], int],
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    tls: TLSFiles | None = None,
    *,
    identity: UserIdentity | None = None,
    sop_classes: Sequence[str] | None = None,
    on_progress: Callable[[RetrieveReport], None] | None = None,
) -> RetrieveReport:
    """Send a C-GET-RQ and store the instances the peer sends back on the same
    association: into the folder ``destination`` (``<SOPInstanceUID>.dcm``, each durable
    before its success status) or through the callable ``destination`` (Part-10 bytes ->
    C-STORE-RSP status). Storage contexts are proposed for ``sop_classes`` (default
    :data:`GET_STORAGE_CLASSES`) with the SCP role (PS3.7 D.3.3.4).

    Raises:
        PeerUnreachableError: as :func:`find`.
    """
    if isinstance(destination, str | os.PathLike):
        store: InstanceStore = FolderStore(Path(destination))
    else:
        store = CallbackStore(destination)
    contexts = _get_contexts(sop_class_of(model, Operation.GET), sop_classes)
    association = _Association.open_with_roles(
        address, calling_ae_title, contexts, client_tls_context(address, tls), identity
    )
    with _closing(association, "C-GET"):
        return association.retrieve_get(identifier, store, on_progress)


def check_report(report: RetrieveReport, operation: str, address: Address) -> RetrieveReport:
    """``report``, unless its final status is a failure.

    Raises:
        QueryRetrieveStatusError: naming the status.
    """
    if report.status is not None and not report.ok:
        raise QueryRetrieveStatusError(
            f"{operation} to {address} failed with status {status_name(report.status)}.",
            report.status,
        )
    return report


def sop_class_of(model: InformationModel, operation: Operation) -> str:
    """The SOP class UID of ``operation`` in ``model``."""
    return next(uid for uid, kind in SOP_CLASSES.items() if kind == (model, operation))


@contextlib.contextmanager
def _closing(association: "_Association", operation: str) -> Iterator[None]:
    """Release the association after its operation; abort it if the operation broke it
    (or a consumer stopped reading a C-FIND early), as a :class:`PeerUnreachableError`."""
    try:
        yield
    except CancelIgnoredError as exc:  # the caller has what it asked for
        logger.warning("%s to %s: %s; association aborted", operation, association.address, exc)
        association.abort()
        return
    except (AssociationLost, ProtocolError, OSError) as exc:
        association.abort()
        raise PeerUnreachableError(
            f"{operation} to {association.address} did not complete: {exc}."
        ) from exc
    except QueryRetrieveStatusError:
        association.release()
        raise
    except BaseException:
        association.abort()
        raise
    association.release()


def _get_contexts(
    get_sop_class: str, sop_classes: Sequence[str] | None
) -> list[tuple[str, list[str]]]:
    storage = list(dict.fromkeys(sop_classes or GET_STORAGE_CLASSES))[: MAX_CONTEXTS - 1]
    return [(get_sop_class, [str(ImplicitVRLittleEndian)])] + [
        (uid, list(GET_TRANSFER_SYNTAXES)) for uid in storage
    ]


class _Associations:
    """The association the instances of one send go over, opened again for the next
    instance after one lost it (a peer aborts on a file cut short, say), so that a bad
    instance fails alone. After ``MAX_LOSSES_IN_A_ROW`` losses in a row, or when the
    peer no longer accepts an association, the rest fail without being tried."""

    def __init__(self, connect: Callable[[], "_Association"]) -> None:
        self._connect = connect
        self.current: _Association | None = None
        self.losses = 0
        self.given_up: str | None = None

    def open(self) -> None:
        """Associate; raise :class:`PeerUnreachableError` if the peer does not accept."""
        self.current = self._connect()

    def get(self) -> "_Association | None":
        """The open association, opened again if the last one was lost."""
        if self.current is None and self.given_up is None:
            try:
                self.open()
            except PeerUnreachableError as exc:
                self.given_up = f"not tried: the association was lost and {exc}"
        return self.current

    def after(self, lost: str | None) -> None:
        """Count in one instance's outcome: ``lost`` says why it lost the association."""
        if lost is None:
            self.losses = 0
            return
        if self.current is not None:
            self.current.abort()
            self.current = None
        self.losses += 1
        if self.losses >= MAX_LOSSES_IN_A_ROW:
            self.given_up = f"not tried: {self.losses} instances in a row lost the association"

    def close(self) -> None:
        if self.current is not None:
            self.current.release()
            self.current = None


def _store_one(
    association: "_Association | None", source: Source, name: str, report: SendReport
) -> str | None:
    """Send one source; return why the association is lost, if it is."""
    try:
        instance = _read(source)
    except Exception as exc:  # one unreadable instance (pydicom raises many kinds) fails alone
        # A file that cannot be read now (OSError) may be later; one that cannot be parsed not.
        _cannot_send(report, name, exc, unsendable=not isinstance(exc, OSError))
        return None
    try:
        if association is None:
            raise ValueError("no presentation context for it")
        context_id, instance = association.fit(instance)
    except Exception as exc:  # re-encoding raises many kinds too
        # A peer may come to accept a SOP class or syntax; pixel data never to decode.
        _cannot_send(report, name, exc, unsendable=isinstance(exc, TranscodeError))
        return None
    try:
        status = association.store(context_id, instance)
    except (AssociationLost, ProtocolError, OSError) as exc:
        reason = f"association lost: {exc}" if str(exc) else "association lost"
        logger.warning("sending %s to %s: %s", name, association.address, reason)
        report.failed[name] = reason
        return reason
    if status in SUCCESS_STATUSES:
        report.sent.append(name)
    else:
        report.failed[name] = f"status 0x{status:04X}"
    return None


def _cannot_send(report: SendReport, name: str, exc: Exception, *, unsendable: bool) -> None:
    logger.warning("cannot send %s: %s", name, exc)
    report.failed[name] = f"cannot send: {exc}"
    if unsendable:
        report.unsendable.add(name)


def _name(source: Source) -> str:
    if isinstance(source, RetrievedInstance):
        return source.sop_instance_uid
    return str(source) if isinstance(source, Path) else str(source.get("SOPInstanceUID", "?"))


# -- sources ---------------------------------------------------------------------------


def _contexts_for(sources: Iterable[Source]) -> list[tuple[str, str]]:
    wanted: dict[str, set[str]] = {}
    for source in sources:
        try:
            sop_class, syntax = _sop_class_and_syntax(source)
        except (OSError, ValueError, AttributeError, KeyError) as exc:
            logger.debug("%s: %s (it will be reported failed)", _name(source), exc)
            continue
        defaults = {str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)}
        wanted.setdefault(sop_class, defaults).add(syntax)
    contexts = [
        (sop_class, syntax) for sop_class, syntaxes in wanted.items() for syntax in sorted(syntaxes)
    ]
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(
            f"Too many SOP class/transfer syntax pairs ({len(contexts)}) for one send."
        )
    return contexts


def _sop_class_and_syntax(source: Source) -> tuple[str, str]:
    if isinstance(source, RetrievedInstance):
        return source.sop_class_uid, source.transfer_syntax
    if isinstance(source, Path):
        return part10.sop_class_and_syntax(source)
    return part10.dataset_sop_class_and_syntax(source)


def _read(source: Source) -> _Instance:
    if isinstance(source, RetrievedInstance):
        return _archived(source)
    if isinstance(source, Dataset):
        sop_class, syntax = part10.dataset_sop_class_and_syntax(source)
        sop_instance = part10.dataset_uid(source, "SOPInstanceUID")
        return _Instance(sop_class, sop_instance, syntax, b"", source)
    size = source.stat().st_size
    streamed = _streamed(source, size) if size > STREAM_BYTES else None
    if streamed is not None:
        return streamed
    data = source.read_bytes()
    try:
        meta = part10.file_meta(data)
    except ValueError:
        return _read(part10.read_with_pydicom(source))
    if meta.dataset_offset >= len(data):
        raise ValueError("the file has no dataset after its file meta")
    syntax = meta.transfer_syntax
    dataset: bytes | memoryview = memoryview(data)[meta.dataset_offset :]
    sop_class, sop_instance = part10.sop_uids(meta, dataset)
    if syntax == DeflatedExplicitVRLittleEndian and len(dataset) % 2:
        dataset = bytes(dataset) + b"\x00"  # PS3.5 A.5: a deflated stream is padded to even
    return _Instance(sop_class, sop_instance, syntax, dataset)


def _archived(source: RetrievedInstance) -> _Instance:
    """An archived instance's Part-10 bytes, read now (one instance held at a time)."""
    data = source.read()
    meta = part10.file_meta(data)
    if meta.dataset_offset >= len(data):
        raise ValueError("the instance has no dataset after its file meta")
    dataset: bytes | memoryview = memoryview(data)[meta.dataset_offset :]
    if meta.transfer_syntax == DeflatedExplicitVRLittleEndian and len(dataset) % 2:
        dataset = bytes(dataset) + b"\x00"  # PS3.5 A.5: a deflated stream is padded to even
    sop_class, sop_instance = source.sop_class_uid, source.sop_instance_uid
    return _Instance(sop_class, sop_instance, meta.transfer_syntax, dataset)


def _streamed(path: Path, size: int) -> _Instance | None:
    """A large file, to be read while it is sent; None where it must be read whole."""
    try:
        meta, head = part10.read_head(path)
    except ValueError:
        return None
    syntax, start = meta.transfer_syntax, meta.dataset_offset
    if syntax == DeflatedExplicitVRLittleEndian or start >= size:
        return None
    sop_class, sop_instance = part10.sop_uids(meta, memoryview(head)[start:])
    return _Instance(
        sop_class, sop_instance, syntax, b"", path=path, offset=start, length=size - start
    )


def _reencode(instance: _Instance, syntax: str) -> _Instance:
    """The instance's dataset in another uncompressed transfer syntax."""
    data = transcode.encoded(_dataset_of(instance), syntax)
    return _Instance(instance.sop_class, instance.sop_instance, syntax, data)


def _decompressed(instance: _Instance) -> _Instance:
    """The instance with its pixel data decoded (pydicom and pylibjpeg), in explicit VR
    little endian, for a peer that accepts only uncompressed syntaxes.

    Raises:
        TranscodeError: if the pixel data cannot be decoded.
    """
    dataset = _dataset_of(instance)
    if dataset is instance.dataset:
        dataset = copy.deepcopy(dataset)  # the caller's: left as it was
    transcode.decompress(dataset, instance.syntax)
    logger.debug("instance %s decoded from %s", instance.sop_instance, UID(instance.syntax).name)
    syntax = str(ExplicitVRLittleEndian)
    return _Instance(instance.sop_class, instance.sop_instance, syntax, b"", dataset)


def _dataset_of(instance: _Instance) -> Dataset:
    """The instance's dataset as pydicom reads it."""
    if instance.dataset is not None:
        return instance.dataset
    if instance.path is not None:
        return dcmread(instance.path, force=True)
    return dcmread(_as_part10(instance), force=True)


def _as_part10(instance: _Instance) -> Any:
    from pydicom.filebase import DicomBytesIO

    from dicomflow.dicom.filemeta import encode_file_meta

    meta = encode_file_meta(instance.sop_class, instance.sop_instance, instance.syntax)
    return DicomBytesIO(meta + bytes(instance.data))


# -- the association -------------------------------------------------------------------


class _Association:
    def __init__(
        self,
        address: Address,
        connection: socket.socket,
        accepted: dict[int, tuple[str, str]],
        peer_maximum_pdu: int,
        calling_ae_title: str = "",
    ) -> None:
        self.address = address
        self.connection = connection
        self.audit = _audit_of(address, connection, calling_ae_title)
        self.accepted = accepted
        limit = peer_maximum_pdu if 0 < peer_maximum_pdu <= MAXIMUM_PDU else MAXIMUM_PDU
        self.fragment_bytes = max(limit - 6, 1)
        self._message_id = 0
        self._pdvs = self._pdv_stream()
        self.results: dict[int, tuple[int, str]] = {}
        """Each proposed context's result and transfer syntax, as the peer answered."""
        self.tls_version = ""
        """The TLS version spoken ("TLSv1.3"), "" for plain DICOM."""
        if isinstance(connection, ssl.SSLSocket):
            self.tls_version = connection.version() or ""

    @classmethod
    def open(
        cls,
        address: Address,
        calling_ae_title: str,
        proposals: list[tuple[str, str]],
        context: ssl.SSLContext | None = None,
        identity: UserIdentity | None = None,
        *,
        request: bytes | None = None,
    ) -> "_Association":
        """Connect (and with ``context`` do the TLS handshake) and associate (with the
        A-ASSOCIATE-RQ body ``request`` if given, else one proposing ``proposals``).

        Raises:
            PeerUnreachableError: naming the peer and why.
        """
        address.validate()
        title = address.ae_title
        if request is None:
            request = pdu.associate_rq(title, calling_ae_title, proposals, MAXIMUM_PDU, identity)
        connection = _connect(address)
        if context is not None:
            connection = _secure(connection, context, address)
        try:
            connection.settimeout(ACSE_TIMEOUT_S)
            pdu.send_pdu(connection, ASSOCIATE_RQ, request)
            pdu_type, body = _read_pdu(connection)
        except ssl.SSLError as exc:  # e.g. a TLS 1.3 peer refusing our certificate only now
            connection.close()
            raise PeerUnreachableError(
                f"Cannot associate with {address}: the peer ended the TLS connection"
                f" ({dicom_tls.describe(exc)}; a peer that requires a trusted client"
                " certificate does so)."
            ) from exc
        except (OSError, EOFError, ProtocolError) as exc:
            connection.close()
            raise PeerUnreachableError(
                f"Cannot associate with {address}: no answer to the association request ({exc})."
            ) from exc
        rejection = pdu.rejection(body) if pdu_type == ASSOCIATE_RJ else None
        if rejection is not None:
            record = _audit_of(address, connection, calling_ae_title)
            record.identity = identity.name if identity is not None else ""
            record.finish(f"rejected: {rejection}")
            connection.close()
            raise PeerUnreachableError(
                f"Cannot associate with {address}: the peer rejected the association {rejection}."
            )
        if pdu_type != ASSOCIATE_AC:
            connection.close()
            raise PeerUnreachableError(
                f"Cannot associate with {address}: the peer answered with PDU type"
                f" 0x{pdu_type:02x} instead of accepting."
            )
        try:
            results, peer_maximum_pdu = pdu.parse_associate_ac(body)
        except ProtocolError as exc:
            connection.close()
            raise PeerUnreachableError(f"Cannot associate with {address}: {exc}.") from exc
        if identity is not None and identity.positive_response_requested:
            _check_identity_response(address, identity, body)
        accepted = pdu.accepted_contexts(proposals, results)
        connection.settimeout(DIMSE_TIMEOUT_S)
        logger.debug(
            "associated with %s: %d of %d contexts accepted, maximum PDU %d",
            address,
            len(accepted),
            len(proposals),
            peer_maximum_pdu,
        )
        association = cls(address, connection, accepted, peer_maximum_pdu, calling_ae_title)
        association.results = results
        association.audit.identity = identity.name if identity is not None else ""
        return association

    def fit(self, instance: _Instance) -> tuple[int, _Instance]:
        """The accepted context for ``instance``, and the instance encoded for it."""
        syntaxes: dict[str, int] = {}
        for context_id, (abstract, syntax) in self.accepted.items():
            if abstract == instance.sop_class:
                syntaxes.setdefault(syntax, context_id)
        if instance.syntax in syntaxes:
            if instance.dataset is not None:
                instance = _reencode(instance, instance.syntax)
            return syntaxes[instance.syntax], instance
        target = next((syntax for syntax in UNCOMPRESSED[:2] if syntax in syntaxes), None)
        if target is not None:
            if instance.syntax not in UNCOMPRESSED:
                instance = _decompressed(instance)
            return syntaxes[target], _reencode(instance, target)
        offered = ", ".join(UID(s).name for s in syntaxes) or "nothing"
        raise ValueError(
            f"the peer accepts {offered} for {UID(instance.sop_class).name},"
            f" not {UID(instance.syntax).name}"
        )

    def store(self, context_id: int, instance: _Instance) -> int:
        """Send one C-STORE-RQ with its dataset; return the response's status."""
        try:
            status = self._store(context_id, instance)
        except BaseException:
            self.audit.count_sent(False)
            raise
        self.audit.count_sent(status in SUCCESS_STATUSES)
        return status

    def _store(self, context_id: int, instance: _Instance) -> int:
        message_id = self._next_message_id()
        command = pdu.c_store_rq(message_id, instance.sop_class, instance.sop_instance)
        pieces = instance.pieces()
        for buffers in pdu.message_pdus(
            context_id, command, pieces, instance.size, self.fragment_bytes
        ):
            pdu.send_views(self.connection, buffers)
        return self._response(C_STORE_RSP, message_id)

    def echo(self) -> int:
        context_id = next(iter(self.accepted), None)
        if context_id is None:
            raise AssociationLost("the peer did not accept the Verification SOP class")
        message_id = self._next_message_id()
        for buffers in pdu.message_pdus(
            context_id, pdu.c_echo_rq(message_id), (), 0, self.fragment_bytes
        ):
            pdu.send_views(self.connection, buffers)
        return self._response(C_ECHO_RSP, message_id)

    @classmethod
    def open_with_roles(
        cls,
        address: Address,
        calling_ae_title: str,
        contexts: list[tuple[str, list[str]]],
        context: ssl.SSLContext | None = None,
        identity: UserIdentity | None = None,
    ) -> "_Association":
        """Associate proposing several transfer syntaxes per context and the SCP role for
        every context after the first (a C-GET's storage contexts)."""
        request = pdu.associate_rq_with_roles(
            address.ae_title,
            calling_ae_title,
            contexts,
            MAXIMUM_PDU,
            [uid for uid, _ in contexts[1:]],
            identity,
        )
        association = cls.open(address, calling_ae_title, [], context, identity, request=request)
        results = association.results
        association.accepted = pdu.accepted_with_roles(contexts, results)
        return association

    def find(self, identifier: Dataset, limit: int | None) -> Iterator[Dataset]:
        """Send one C-FIND-RQ; yield each pending response's identifier."""
        context_id, sop_class = self._query_context("C-FIND")
        message_id = self._next_message_id()
        self._send_message(context_id, pdu.c_find_rq(message_id, sop_class), identifier)
        found = 0
        while True:
            _, command = self._next_command()
            status = pdu.response_status(command, pdu.C_FIND_RSP, message_id)
            data = self._identifier() if pdu.has_dataset(command) else None
            if status not in PENDING_STATUSES:
                self._check_final(status, "C-FIND")
                return
            if data is not None:
                found += 1
                yield data
            if limit is not None and found >= limit:
                self._cancel(context_id, message_id, pdu.C_FIND_RSP)
                return

    def retrieve_move(
        self,
        identifier: Dataset,
        destination_ae_title: str,
        on_progress: Callable[[RetrieveReport], None] | None,
    ) -> RetrieveReport:
        """Send one C-MOVE-RQ; follow its responses to the final one."""
        context_id, sop_class = self._query_context("C-MOVE")
        message_id = self._next_message_id()
        command = pdu.c_move_rq(message_id, sop_class, destination_ae_title)
        self._send_message(context_id, command, identifier)
        return self._follow(C_MOVE_RSP, message_id, on_progress, None)

    def retrieve_get(
        self,
        identifier: Dataset,
        store: InstanceStore,
        on_progress: Callable[[RetrieveReport], None] | None,
    ) -> RetrieveReport:
        """Send one C-GET-RQ; answer its C-STORE sub-operations; follow its responses."""
        context_id, sop_class = self._query_context("C-GET")
        message_id = self._next_message_id()
        self._send_message(context_id, pdu.c_get_rq(message_id, sop_class), identifier)
        return self._follow(pdu.C_GET_RSP, message_id, on_progress, store)

    def _follow(
        self,
        response_field: int,
        message_id: int,
        on_progress: Callable[[RetrieveReport], None] | None,
        store: InstanceStore | None,
    ) -> RetrieveReport:
        report = RetrieveReport()
        while True:
            context_id, command = self._next_command()
            if store is not None and pdu.us(command, pdu.COMMAND_FIELD) == pdu.C_STORE_RQ:
                self._answer_store(context_id, command, store, report)
            else:
                status = pdu.response_status(command, response_field, message_id)
                if pdu.has_dataset(command):
                    self._identifier()  # the failed SOP instance UID list: bounded, unused
                report.update(status, pdu.sub_operations(command))
                if status not in PENDING_STATUSES:
                    return report
            if on_progress is not None:
                on_progress(report)

    def _answer_store(
        self,
        context_id: int,
        command: dict[int, bytes],
        store: InstanceStore,
        report: RetrieveReport,
    ) -> None:
        """Receive one C-STORE sub-operation's instance into ``store``; answer it."""
        instance = IncomingInstance(
            pdu.uid(command, pdu.AFFECTED_SOP_CLASS_UID),
            pdu.uid(command, pdu.AFFECTED_SOP_INSTANCE_UID),
            self.accepted.get(context_id, ("", str(ImplicitVRLittleEndian)))[1],
        )
        try:
            receipt = store.begin(instance)
        except (InvalidKeyError, OSError, ValueError) as exc:
            self._read_data(lambda _fragment: None)
            status = refusal(instance, exc)
        else:
            status = self._receive(receipt)
        if status in SUCCESS_STATUSES:
            report.stored += 1
        else:
            report.refused += 1
        message_id = pdu.us(command, pdu.MESSAGE_ID)
        answer = pdu.response(
            C_STORE_RSP, message_id, instance.sop_class_uid, instance.sop_instance_uid, status
        )
        pdu.send_pdu(self.connection, P_DATA_TF, pdu.command_pdv(context_id, answer))

    def _receive(self, receipt: Receipt) -> int:
        """Pass the data set to ``receipt`` and keep it; a local failure to keep it (a
        full disk) is answered with 0xA700, a lost association ends the retrieval."""
        try:
            self._read_data(receipt.write)
            return receipt.finish()
        except OSError as exc:
            receipt.discard()
            if isinstance(exc, AssociationLost | TimeoutError | ConnectionError):
                raise
            logger.error("C-GET from %s: cannot keep an instance: %s", self.address, exc)
            return OUT_OF_RESOURCES
        except BaseException:
            receipt.discard()
            raise

    def _query_context(self, operation: str) -> tuple[int, str]:
        context_id = next(iter(sorted(self.accepted)), None)
        if context_id is None or self.accepted[context_id][0] not in SOP_CLASSES:
            raise AssociationLost(f"the peer did not accept the {operation} information model")
        return context_id, self.accepted[context_id][0]

    def _send_message(self, context_id: int, command: bytes, identifier: Dataset) -> None:
        data = encode(identifier, True, True)
        if data is None:
            raise ValueError("the identifier cannot be encoded")
        for buffers in pdu.message_pdus(
            context_id, command, [data], len(data), self.fragment_bytes
        ):
            pdu.send_views(self.connection, buffers)

    def _check_final(self, status: int, operation: str) -> None:
        if status not in SUCCESS_STATUSES:
            raise QueryRetrieveStatusError(
                f"{operation} to {self.address} failed with status {status_name(status)}.", status
            )

    def _cancel(self, context_id: int, message_id: int, response_field: int) -> None:
        """Send a C-CANCEL-RQ; read up to ``MAX_AFTER_CANCEL`` responses for the final one
        (a peer that goes on sending is left to the abort that follows)."""
        command = pdu.c_cancel_rq(message_id)
        for buffers in pdu.message_pdus(context_id, command, [], 0, self.fragment_bytes):
            pdu.send_views(self.connection, buffers)
        deadline = time.monotonic() + CANCEL_DRAIN_S
        for _ in range(MAX_AFTER_CANCEL):
            if time.monotonic() > deadline:
                break
            _, answer = self._next_command()
            status = pdu.response_status(answer, response_field, message_id)
            if pdu.has_dataset(answer):
                self._identifier()
            if status not in PENDING_STATUSES:
                return
        raise CancelIgnoredError(
            f"the peer did not end the query within {MAX_AFTER_CANCEL} responses or"
            f" {CANCEL_DRAIN_S:.0f} s of its C-CANCEL"
        )

    def _identifier(self) -> Dataset:
        """The data set that follows a command: at most ``MAX_IDENTIFIER_BYTES``."""
        data = bytearray()

        def keep(fragment: memoryview) -> None:
            if len(data) + len(fragment) > MAX_IDENTIFIER_BYTES:
                raise ProtocolError(
                    f"an identifier longer than {MAX_IDENTIFIER_BYTES} bytes from {self.address}"
                )
            data.extend(fragment)

        self._read_data(keep)
        return pdu.decode_identifier(bytes(data))

    def _next_command(self) -> tuple[int, dict[int, bytes]]:
        """The next command set (and the context it came on)."""
        fragments: list[bytes] = []
        size = 0
        for context_id, control, fragment in self._pdvs:
            if not control & pdu.COMMAND:
                raise ProtocolError("a data set fragment where a command was expected")
            size += len(fragment)
            if size > MAX_RESPONSE_PDU:
                raise ProtocolError("a command set longer than 1 MiB")
            fragments.append(bytes(fragment))
            if control & pdu.LAST:
                return context_id, pdu.parse_command(b"".join(fragments))
        raise AssociationLost("the peer closed the connection")

    def _read_data(self, write: Callable[[memoryview], None]) -> None:
        """Pass the fragments of the data set that follows a command to ``write``."""
        for _, control, fragment in self._pdvs:
            if control & pdu.COMMAND:
                raise ProtocolError("a command where a data set fragment was expected")
            write(fragment)
            if control & pdu.LAST:
                return
        raise AssociationLost("the peer closed the connection")

    def _pdv_stream(self) -> Iterator[tuple[int, int, memoryview]]:
        """The PDV items the peer sends, across P-DATA-TF PDUs (each up to our maximum)."""
        while True:
            try:
                pdu_type, body = pdu.read_pdu(
                    self.connection, maximum_data=MAXIMUM_PDU, maximum_other=MAX_RESPONSE_PDU
                )
            except TimeoutError as exc:
                raise AssociationLost(f"no response within {DIMSE_TIMEOUT_S:g} s") from exc
            except EOFError as exc:
                raise AssociationLost("the peer closed the connection") from exc
            if pdu_type == ABORT:
                raise AssociationLost("aborted by the peer")
            if pdu_type != P_DATA_TF:
                raise ProtocolError(f"PDU type 0x{pdu_type:02x} instead of a response")
            yield from pdu.pdv_items(body, strict=False)

    def release(self) -> None:
        try:
            self.connection.settimeout(ACSE_TIMEOUT_S)
            pdu.send_pdu(self.connection, RELEASE_RQ, pdu.RELEASE_BODY)
            while True:
                pdu_type, _ = _read_pdu(self.connection)
                if pdu_type in (RELEASE_RP, ABORT):
                    break
        except (OSError, EOFError, ProtocolError) as exc:
            logger.debug("release of the association with %s: %s", self.address, exc)
        finally:
            self.connection.close()
            self.audit.finish("released")

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            pdu.send_pdu(self.connection, ABORT, pdu.abort(pdu.SERVICE_USER))
        self.connection.close()
        self.audit.finish("aborted")

    def _next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _response(self, command_field: int, message_id: int) -> int:
        fragments: list[bytes] = []
        while True:
            try:
                pdu_type, body = _read_pdu(self.connection)
            except TimeoutError as exc:
                raise AssociationLost(f"no response within {DIMSE_TIMEOUT_S:g} s") from exc
            except EOFError as exc:
                raise AssociationLost("the peer closed the connection") from exc
            if pdu_type == ABORT:
                raise AssociationLost("aborted by the peer")
            if pdu_type != P_DATA_TF:
                raise ProtocolError(f"PDU type 0x{pdu_type:02x} instead of a response")
            for _, control, fragment in pdu.pdv_items(body, strict=False):
                if control & pdu.COMMAND:
                    fragments.append(bytes(fragment))
                    if control & pdu.LAST:
                        command = pdu.parse_command(b"".join(fragments))
                        return pdu.response_status(command, command_field, message_id)


def _check_identity_response(address: Address, identity: UserIdentity, body: bytearray) -> None:
    """Warn when the peer accepted without the positive response asked for (PS3.7
    D.3.3.7.2 lets the association go on: the peer may not support user identities)."""
    try:
        response = pdu.user_identity_response(body)
    except ProtocolError as exc:
        logger.warning("%s: malformed user identity response (%s)", address, exc)
        return
    if response is None:
        logger.warning(
            "%s accepted the association without confirming user %s (no positive response)",
            address,
            shown(identity.name),
        )


def _audit_of(
    address: Address, connection: socket.socket, calling_ae_title: str
) -> audit.AssociationAudit:
    """The audit record of an association with ``address`` (TLS where it was set up)."""
    try:
        ip = str(connection.getpeername()[0])
    except OSError:
        ip = address.ip
    record = audit.AssociationAudit(audit.Direction.SENT, ip, address.port, calling_ae_title)
    record.called_ae_title = address.ae_title
    if isinstance(connection, ssl.SSLSocket):
        record.tls, record.peer_certificate = connection.version() or "", peer_subject(connection)
    return record


def _connect(address: Address) -> socket.socket:
    try:
        infos = socket.getaddrinfo(address.ip, address.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PeerUnreachableError(f"Cannot associate with {address}: {exc}.") from exc
    error: OSError | None = None
    for family, kind, protocol, _, target in infos:
        connection = socket.socket(family, kind, protocol)
        tune_requesting_socket(connection)
        connection.settimeout(CONNECT_TIMEOUT_S)
        try:
            connection.connect(target)
        except OSError as exc:
            connection.close()
            error = exc
            continue
        return connection
    reason = error.strerror if error is not None and error.strerror else str(error)
    raise PeerUnreachableError(
        f"Cannot associate with {address}: the peer is unreachable ({reason})."
    )


def _secure(connection: socket.socket, context: ssl.SSLContext, address: Address) -> ssl.SSLSocket:
    """The connection with its TLS handshake done.

    Raises:
        PeerUnreachableError: the handshake failed (the message says why).
    """
    try:
        return dicom_tls.handshake(context, connection, server_side=False, timeout_s=ACSE_TIMEOUT_S)
    except (ssl.SSLError, OSError) as exc:  # TimeoutError and a closed connection too
        connection.close()
        raise PeerUnreachableError(
            f"Cannot associate with {address}: the TLS handshake failed ({_why(exc)})."
        ) from exc


def _why(exc: BaseException) -> str:
    """Why a handshake failed, with what it usually means."""
    reason = dicom_tls.describe(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the peer's certificate is not trusted: {reason}"
    if not isinstance(exc, ssl.SSLError):
        return f"{reason}; does the peer speak TLS on this port?"
    return reason


def _read_pdu(connection: socket.socket) -> tuple[int, bytearray]:
    """A response or association PDU (small: a longer one is a protocol error)."""
    return pdu.read_pdu(connection, maximum_data=MAX_RESPONSE_PDU, maximum_other=MAX_RESPONSE_PDU)
