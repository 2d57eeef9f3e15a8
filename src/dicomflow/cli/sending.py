"""File collection, the TLS options and a Rich progress bar around
:func:`dicomflow.net.requestor.send`."""

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from dicomflow.address import Address
from dicomflow.net.requestor import SendReport, send
from dicomflow.tls import TLSFiles

PREAMBLE_END = 132


def collect_files(paths: list[Path]) -> list[Path]:
    """Every Part-10 file among ``paths`` (folders searched recursively), sorted."""
    found: list[Path] = []
    for path in paths:
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        found.extend(p for p in candidates if is_part10(p))
    return found


def is_part10(path: Path) -> bool:
    """Tell whether ``path`` starts like a DICOM Part-10 file."""
    try:
        with path.open("rb") as stream:
            head = stream.read(PREAMBLE_END)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def tls_files(
    tls: bool, certificate: Path | None, private_key: Path | None, ca_certificates: Path | None
) -> TLSFiles | None:
    """The files ``--tls``, ``--tls-cert``, ``--tls-key`` and ``--tls-ca`` give (any of
    them means TLS); None for plain DICOM. They are checked when the context is made."""
    if not (tls or certificate or private_key or ca_certificates):
        return None
    return TLSFiles(certificate, private_key, ca_certificates)


def send_with_progress(
    address: Address,
    files: list[Path],
    calling_ae_title: str,
    console: Console,
    tls: TLSFiles | None = None,
) -> SendReport:
    """Send ``files`` over one association (over TLS with ``tls``), showing a progress
    bar."""
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task(f"C-STORE to {address}", total=len(files))

    def advance(done: int) -> None:
        if not progress.live.is_started:  # shown once associated, not before an error
            progress.start()
        progress.update(task, completed=done)

    try:
        return send(address, files, calling_ae_title=calling_ae_title, on_progress=advance, tls=tls)
    finally:
        if progress.live.is_started:
            progress.stop()
