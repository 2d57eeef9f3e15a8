"""``dicomflow find``, ``dicomflow move`` and ``dicomflow get``: query a PACS (C-FIND)
and retrieve from it (C-MOVE to an AE title, C-GET into a folder), with the TLS and
user identity options of ``dicomflow send``.

Keys are ``Keyword=value`` (``-k PatientID=123 -k "PatientName=SMI*" -k
StudyDate=20240101-``); ``Keyword=`` asks for the attribute back. Every error (an
unreachable peer, a failure status, a bad key) is one ``error:`` line and exit code 1
(2 for a usage error).
"""

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydicom import Dataset
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from dicomflow.address import Address
from dicomflow.cli.sending import (
    ClientTlsCa,
    ClientTlsCert,
    ClientTlsKey,
    Password,
    PasswordStdin,
    Tls,
    Username,
    identity_from,
    tls_files,
)
from dicomflow.dicom.keys import shorten
from dicomflow.errors import DicomflowError
from dicomflow.net import requestor
from dicomflow.net.query_retrieve import InformationModel, Operation
from dicomflow.net.retrieve import query_identifier
from dicomflow.net.sub_operations import RetrieveReport
from dicomflow.net.user_identity import UserIdentity
from dicomflow.settings import parse_endpoint
from dicomflow.tls import TLSFiles

console = Console(stderr=True, soft_wrap=True)
results = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 400)
"""Matches on stdout: as wide as a terminal, else wide enough for whole values."""
MAX_SHOWN = 64
"""A value longer than this is cut in the table (a peer may return 10 kB values)."""


class Model(StrEnum):
    STUDY = "study"
    PATIENT = "patient"


MODELS = {Model.STUDY: InformationModel.STUDY_ROOT, Model.PATIENT: InformationModel.PATIENT_ROOT}
Endpoint = Annotated[str, typer.Argument(help="The peer: AE@host:port (?tls: over DICOM TLS).")]
Level = Annotated[str, typer.Option("--level", help="PATIENT, STUDY, SERIES or IMAGE.")]
ModelOption = Annotated[
    Model, typer.Option("--model", help="Information model: study or patient root.")
]
Keys = Annotated[
    list[str] | None,
    typer.Option(
        "--key", "-k", help='Keyword=value to match; "Keyword=" to have it returned. Repeatable.'
    ),
]
CallingAe = Annotated[str, typer.Option("--calling-ae", help="Our (calling) AE title.")]


@dataclass(frozen=True)
class Peer:
    """Who to associate with, and how (built from the options shared by the commands)."""

    address: Address
    calling_ae_title: str
    tls: TLSFiles | None
    identity: UserIdentity | None


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _peer(
    endpoint: str,
    calling_ae: str,
    tls: tuple[bool, Path | None, Path | None, Path | None],
    username: str | None,
    password: str | None,
    password_stdin: bool,
) -> Peer:
    try:
        address = parse_endpoint(endpoint)
        identity = identity_from(username, password, password_stdin)
    except ValueError as exc:
        fail(str(exc), 2)
    if address.deidentify:
        fail(f'"{endpoint[:200]}": ?deid marks endpoints the node sends results to.', 2)
    files = tls_files(*tls)
    return Peer(address, calling_ae, files, identity)


def _identifier(level: str, keys: list[str] | None, *, return_keys: bool) -> Dataset:
    try:
        return query_identifier(level.upper(), keys or [], return_keys=return_keys)
    except DicomflowError as exc:
        fail(str(exc), 2)


def find(
    endpoint: Endpoint,
    level: Level = "STUDY",
    model: ModelOption = Model.STUDY,
    key: Keys = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One DICOM JSON object per match and line.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Cancel after this many matches (0: none).")
    ] = 1000,
    calling_ae: CallingAe = "DICOMFLOW",
    tls: Tls = False,
    tls_cert: ClientTlsCert = None,
    tls_key: ClientTlsKey = None,
    tls_ca: ClientTlsCa = None,
    username: Username = None,
    password: Password = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Query a peer (C-FIND) and show the matches as a table (or DICOM JSON lines)."""
    peer = _peer(
        endpoint, calling_ae, (tls, tls_cert, tls_key, tls_ca), username, password, password_stdin
    )
    identifier = _identifier(level, key, return_keys=True)
    matches = requestor.find(
        peer.address,
        identifier,
        MODELS[model],
        peer.calling_ae_title,
        peer.tls,
        identity=peer.identity,
        limit=limit or None,
    )
    try:
        count = _json_lines(matches) if as_json else _table(matches, identifier)
    except (DicomflowError, ValueError) as exc:
        fail(str(exc))
    cut = f" (the first {limit}: see --limit)" if limit and count >= limit else ""
    console.print(f"{count} match(es) from {peer.address}{cut}", highlight=False)


def _json_lines(matches: Iterable[Dataset]) -> int:
    count = 0
    for match in matches:
        sys.stdout.write(json.dumps(match.to_json_dict(), separators=(",", ":")) + "\n")
        count += 1
    sys.stdout.flush()
    return count


def _table(matches: Iterable[Dataset], identifier: Dataset) -> int:
    keywords = [e.keyword for e in identifier if e.keyword and e.keyword != "QueryRetrieveLevel"]
    table = Table()
    for keyword in keywords:
        table.add_column(keyword, overflow="fold")
    for match in matches:
        table.add_row(*(escape(_shown(match, keyword)) for keyword in keywords))
    results.print(table)
    return table.row_count


def _shown(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    return "" if value is None else shorten(str(value), MAX_SHOWN)


def move(
    endpoint: Endpoint,
    destination: Annotated[
        str, typer.Option("--destination", help="The AE title the peer sends to.")
    ],
    level: Level = "STUDY",
    model: ModelOption = Model.STUDY,
    key: Keys = None,
    calling_ae: CallingAe = "DICOMFLOW",
    tls: Tls = False,
    tls_cert: ClientTlsCert = None,
    tls_key: ClientTlsKey = None,
    tls_ca: ClientTlsCa = None,
    username: Username = None,
    password: Password = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Ask a peer to send what the keys match to an AE title (C-MOVE)."""
    peer = _peer(
        endpoint, calling_ae, (tls, tls_cert, tls_key, tls_ca), username, password, password_stdin
    )
    identifier = _identifier(level, key, return_keys=False)
    sop_class = requestor.sop_class_of(MODELS[model], Operation.MOVE)
    with RetrieveProgress(f"C-MOVE to {destination}") as show:
        try:
            report = requestor.move_report(
                peer.address,
                identifier,
                destination,
                sop_class,
                peer.calling_ae_title,
                tls=peer.tls,
                identity=peer.identity,
                on_progress=show,
            )
            requestor.check_report(report, "C-MOVE", peer.address)
        except (DicomflowError, ValueError) as exc:
            fail(str(exc))
    _summary(f"moved {report.completed} instance(s) to {destination}", report)


def get(
    endpoint: Endpoint,
    out: Annotated[Path, typer.Option("--out", help="Folder the instances are written to.")],
    level: Level = "STUDY",
    model: ModelOption = Model.STUDY,
    key: Keys = None,
    calling_ae: CallingAe = "DICOMFLOW",
    tls: Tls = False,
    tls_cert: ClientTlsCert = None,
    tls_key: ClientTlsKey = None,
    tls_ca: ClientTlsCa = None,
    username: Username = None,
    password: Password = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Retrieve what the keys match into a folder (C-GET), one <SOPInstanceUID>.dcm each."""
    peer = _peer(
        endpoint, calling_ae, (tls, tls_cert, tls_key, tls_ca), username, password, password_stdin
    )
    identifier = _identifier(level, key, return_keys=False)
    with RetrieveProgress(f"C-GET into {out}") as show:
        try:
            report = requestor.get(
                peer.address,
                identifier,
                MODELS[model],
                out,
                peer.calling_ae_title,
                peer.tls,
                identity=peer.identity,
                on_progress=show,
            )
            requestor.check_report(report, "C-GET", peer.address)
        except (DicomflowError, ValueError, OSError) as exc:
            fail(str(exc))
    _summary(f"retrieved {report.stored} instance(s) into {out}", report)


class RetrieveProgress:
    """A Rich progress line of a retrieval's completed, remaining and failed counts."""

    def __init__(self, description: str) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
        )
        self.progress = Progress(*columns, console=console, transient=False)
        self.task = self.progress.add_task(description, total=None, counts="")

    def __enter__(self) -> "RetrieveProgress":
        return self

    def __call__(self, report: RetrieveReport) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        done = report.completed + report.failed + report.warning
        counts = (
            f"{report.completed} completed, {report.remaining} remaining, {report.failed} failed"
        )
        self.progress.update(
            self.task, completed=done, total=done + report.remaining, counts=counts
        )

    def __exit__(self, *_: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _summary(text: str, report: RetrieveReport) -> None:
    results.print(f"{text} ({report.failed} failed, {report.warning} warning)")
    if report.failed or report.refused:
        raise typer.Exit(1)
