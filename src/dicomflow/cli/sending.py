"""File collection, the TLS options and a Rich progress bar around
:func:`dicomflow.net.requestor.send`."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from dicomflow.address import Address
from dicomflow.net.requestor import SendReport, send
from dicomflow.net.user_identity import UserIdentity
from dicomflow.tls import TLSFiles

PREAMBLE_END = 132

# The options of every command that associates with a peer (send, echo, find, move, get).
Tls = Annotated[
    bool, typer.Option("--tls", help="Speak DICOM TLS (implied by the --tls-* options).")
]
ClientTlsCert = Annotated[
    Path | None, typer.Option("--tls-cert", help="Client certificate (PEM) for mutual TLS.")
]
ClientTlsKey = Annotated[Path | None, typer.Option("--tls-key", help="Its private key (PEM).")]
ClientTlsCa = Annotated[
    Path | None,
    typer.Option("--tls-ca", help="Trusted server certificates (PEM); default: the system's."),
]
Username = Annotated[
    str | None, typer.Option("--username", help="Present this user identity (PS3.7 D.3.3.7).")
]
Password = Annotated[str | None, typer.Option("--password", help="The user's password.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
]


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


def identity_from(
    username: str | None, password: str | None, password_stdin: bool
) -> UserIdentity | None:
    """The user identity ``--username``/``--password``/``--password-stdin`` give (the
    password on stdin is its first line); ``ValueError`` if they do not fit together."""
    if username is None:
        if password is not None or password_stdin:
            raise ValueError("--password and --password-stdin need --username.")
        return None
    if not username:
        raise ValueError("--username must not be empty.")
    if password is not None and password_stdin:
        raise ValueError("give --password or --password-stdin, not both.")
    if password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    return UserIdentity.of(username, password)


def send_with_progress(
    address: Address,
    files: list[Path],
    calling_ae_title: str,
    console: Console,
    tls: TLSFiles | None = None,
    identity: UserIdentity | None = None,
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
        return send(
            address,
            files,
            calling_ae_title=calling_ae_title,
            on_progress=advance,
            tls=tls,
            identity=identity,
        )
    finally:
        if progress.live.is_started:
            progress.stop()
