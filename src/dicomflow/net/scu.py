"""The SCU client: C-ECHO and C-STORE to a peer, over one association."""

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicomflow.errors import PeerUnreachableError
from dicomflow.net import reactor
from dicomflow.net.address import Address

logger = logging.getLogger(__name__)

DEFAULT_CALLING_AE_TITLE = "DICOMFLOW"
MAX_CONTEXTS = 128
Source = Path | Dataset


@dataclass
class SendReport:
    """What happened to each instance of one send."""

    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def echo(address: Address, calling_ae_title: str = DEFAULT_CALLING_AE_TITLE) -> None:
    """Send a C-ECHO; raise :class:`PeerUnreachableError` unless it succeeds."""
    ae = _make_ae(calling_ae_title)
    ae.add_requested_context(Verification)
    assoc = _associate(ae, address)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status or status.Status != 0:
        raise PeerUnreachableError(f"C-ECHO to {address} failed (status {_status_text(status)}).")


def send(
    address: Address,
    sources: Sequence[Source],
    calling_ae_title: str = DEFAULT_CALLING_AE_TITLE,
    on_progress: Callable[[int], None] | None = None,
) -> SendReport:
    """Send every source (Part-10 file or dataset) over one association."""
    ae = _make_ae(calling_ae_title)
    for context in _contexts_for(sources):
        ae.add_requested_context(*context)
    assoc = _associate(ae, address)
    report = SendReport()
    try:
        for index, source in enumerate(sources):
            _store_one(assoc, source, report)
            if on_progress is not None:
                on_progress(index + 1)
    finally:
        if assoc.is_established:
            assoc.release()
    return report


def _store_one(assoc: Any, source: Source, report: SendReport) -> None:
    name = str(source) if isinstance(source, Path) else str(source.get("SOPInstanceUID", "?"))
    if not assoc.is_established:
        report.failed[name] = "association lost"
        return
    try:
        status = assoc.send_c_store(source)
    except (OSError, ValueError, AttributeError, RuntimeError) as exc:
        report.failed[name] = f"cannot send: {exc}"
        return
    code = getattr(status, "Status", None)
    if code in (0x0000, 0xB000, 0xB007, 0xB006):
        report.sent.append(name)
    else:
        report.failed[name] = f"status {_status_text(status)}"


def _contexts_for(sources: Iterable[Source]) -> list[tuple[UID, list[UID]]]:
    wanted: dict[UID, set[UID]] = {}
    for source in sources:
        sop_class, syntax = _sop_class_and_syntax(source)
        wanted.setdefault(sop_class, {ExplicitVRLittleEndian, ImplicitVRLittleEndian}).add(syntax)
    contexts: list[tuple[UID, list[UID]]] = []
    for sop_class, syntaxes in wanted.items():
        for syntax in sorted(syntaxes):
            contexts.append((sop_class, [UID(syntax)]))
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(
            f"Too many SOP class/transfer syntax pairs ({len(contexts)}) for one send."
        )
    return contexts


def _sop_class_and_syntax(source: Source) -> tuple[UID, UID]:
    if isinstance(source, Path):
        header = dcmread(source, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        syntax = header.file_meta.TransferSyntaxUID
        return UID(header.file_meta.MediaStorageSOPClassUID), UID(syntax)
    meta = getattr(source, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) or ExplicitVRLittleEndian
    return UID(source.SOPClassUID), UID(syntax)


def _make_ae(calling_ae_title: str) -> AE:
    # Stock pynetdicom's requestor waits on the peer's delayed ACKs (dcmtk storescp
    # takes 11 instances/s from it, 460/s with the reactors) and can lose a response
    # to its own reactor thread (then waits dimse_timeout and aborts).
    reactor.install()
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    ae.network_timeout = 60
    ae.connection_timeout = 10
    return ae


def _associate(ae: AE, address: Address) -> Any:
    address.validate()
    assoc = ae.associate(address.ip, address.port, ae_title=address.ae_title)
    if not assoc.is_established:
        raise PeerUnreachableError(
            f"Cannot associate with {address}: the peer is unreachable or rejected the association."
        )
    return assoc


def _status_text(status: Any) -> str:
    code = getattr(status, "Status", None)
    return "none (no response)" if code is None else f"0x{code:04X}"
