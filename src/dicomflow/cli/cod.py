"""``dicomflow cod ingest|ls|get|verify|unlock``: a Cloud Optimized DICOM datastore."""

from collections import defaultdict
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NoReturn

import pydicom
import typer
from pydicom.errors import InvalidDicomError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from dicomflow.cli.sending import collect_files
from dicomflow.cod import CODObject, Instance, list_series, list_studies
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.errors import DicomflowError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True, soft_wrap=True)  # errors and progress
results = Console(soft_wrap=True, highlight=False)  # what a command reports back, on stdout

Datastore = Annotated[
    str, typer.Option("--datastore", "-d", help="Datastore URL (a local folder by default).")
]
SeriesKey = tuple[str, str]


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _existing(datastore: str) -> str:
    """``datastore``, or a one-line error if it is a local folder that does not exist."""
    local = "://" not in datastore and "::" not in datastore
    if local and not Path(datastore).expanduser().is_dir():
        _fail(f'Datastore "{datastore}" does not exist: no such folder.', 2)
    return datastore


def _error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)


@dataclass
class SeriesReport:
    """What ingesting one series did (picklable, returned by a worker process)."""

    new: int = 0
    duplicates: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)


def group_by_series(paths: list[Path]) -> tuple[dict[SeriesKey, list[str]], list[str]]:
    """Group files by (StudyInstanceUID, SeriesInstanceUID); return the groups and errors."""
    groups: dict[SeriesKey, list[str]] = defaultdict(list)
    errors: list[str] = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            errors.append(f'File "{path}" cannot be read: {exc}.')
            continue
        groups[key].append(str(path.resolve()))
    return dict(groups), errors


def ingest_series(datastore: str, study: str, series: str, files: list[str]) -> SeriesReport:
    """Append and sync one series under its lock (runs in a worker process)."""
    report = SeriesReport()
    with CODObject(datastore, study, series, lock=True) as cod:
        result = cod.append([Instance(file) for file in files])
        if result.new or result.conflicts:
            cod.sync()
    report.new, report.duplicates = len(result.new), len(result.duplicates)
    report.conflicts = len(result.conflicts)
    report.errors = [str(exc) for _, exc in result.errors]
    return report


def _run_ingest(
    datastore: str, groups: dict[SeriesKey, list[str]], workers: int | None
) -> SeriesReport:
    total = SeriesReport()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    count = sum(len(files) for files in groups.values())
    with Progress(*columns, console=console) as progress, ProcessPoolExecutor(workers) as pool:
        task = progress.add_task(f"ingest into {datastore}", total=count)
        futures: dict[Future[SeriesReport], SeriesKey] = {
            pool.submit(ingest_series, datastore, *key, files): key for key, files in groups.items()
        }
        for future in as_completed(futures):
            study, series = futures[future]
            progress.advance(task, len(groups[(study, series)]))
            try:
                report = future.result()
            except Exception as exc:  # one failed series is reported, the rest go on
                total.errors.append(f'Series "{series}" of study "{study}": {exc}')
                continue
            total.new += report.new
            total.duplicates += report.duplicates
            total.conflicts += report.conflicts
            total.errors.extend(report.errors)
    return total


@app.command("ingest")
def ingest_command(
    sources: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).")],
    datastore: Datastore,
    workers: Annotated[int | None, typer.Option(help="Worker processes.", min=1)] = None,
) -> None:
    """Add Part-10 files to the datastore, one locked task per series."""
    paths = collect_files(sources)
    if not paths:
        _fail("no DICOM files found in the given paths.", 2)
    groups, errors = group_by_series(paths)
    total = _run_ingest(datastore, groups, workers) if groups else SeriesReport()
    total.errors = errors + total.errors
    for message in total.errors:
        _error(message)
    results.print(
        f"{len(groups)} series: {total.new} new, {total.duplicates} duplicate(s), "
        f"{total.conflicts} conflict(s), {len(total.errors)} error(s)",
        highlight=False,
    )
    if total.errors:
        raise typer.Exit(1)


def _print_instances(datastore: str, study: str, series: str) -> None:
    cod = CODObject(datastore, study, series, lock=False)
    for uid in cod.list_instances():
        typer.echo(f"{uid}\t{cod.instance_metadata(uid)['size']}")


@app.command("ls")
def ls_command(
    datastore: Datastore,
    study: Annotated[str | None, typer.Argument(help="StudyInstanceUID.")] = None,
    series: Annotated[str | None, typer.Argument(help="SeriesInstanceUID.")] = None,
) -> None:
    """List studies, the series of a study, or the instances (uid, size) of a series."""
    datastore = _existing(datastore)
    try:
        if study is None:
            names = list_studies(datastore)
        elif series is None:
            names = list_series(datastore, study)
        else:
            _print_instances(datastore, study, series)
            return
    except (DicomflowError, OSError) as exc:
        _fail(str(exc))
    for name in names:
        typer.echo(name)


def _all_series(datastore: str) -> list[SeriesKey]:
    return [(s, r) for s in list_studies(datastore) for r in list_series(datastore, s)]


def _find(datastore: str, sop_instance_uid: str) -> CODObject:
    for study, series in _all_series(datastore):
        cod = CODObject(datastore, study, series, lock=False)
        if sop_instance_uid in cod.list_instances():
            return cod
    raise DicomflowError(f'Datastore "{datastore}" has no instance "{sop_instance_uid}".')


@app.command("get")
def get_command(
    sop_instance_uid: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    datastore: Datastore,
    study: Annotated[str | None, typer.Option("--study", help="StudyInstanceUID.")] = None,
    series: Annotated[str | None, typer.Option("--series", help="SeriesInstanceUID.")] = None,
) -> None:
    """Write an instance's stored bytes to a file."""
    if (study is None) != (series is None):
        _fail("give both --study and --series, or neither.", 2)
    datastore = _existing(datastore)
    try:
        if study is not None and series is not None:
            cod = CODObject(datastore, study, series, lock=False)
        else:
            cod = _find(datastore, sop_instance_uid)
        output.write_bytes(cod.get(sop_instance_uid))
    except (DicomflowError, OSError) as exc:
        _fail(str(exc))
    results.print(f"wrote {sop_instance_uid} to {output}")


def _verify_series(datastore: str, study: str, series: str) -> tuple[int, list[str]]:
    cod = CODObject(datastore, study, series, lock=False)
    problems: list[str] = []
    uids = cod.list_instances()
    for uid in uids:
        try:
            cod.get(uid)
        except (DicomflowError, OSError) as exc:
            problems.append(str(exc))
    return len(uids), problems


@app.command("verify")
def verify_command(datastore: Datastore) -> None:
    """Check every instance's crc32c by a ranged read."""
    checked, problems = 0, list[str]()
    datastore = _existing(datastore)
    try:
        for study, series in _all_series(datastore):
            count, found = _verify_series(datastore, study, series)
            checked, problems = checked + count, problems + found
    except (DicomflowError, OSError) as exc:
        _fail(str(exc))
    for problem in problems:
        _error(problem)
    results.print(f"checked {checked} instance(s): {len(problems)} problem(s)")
    if problems:
        raise typer.Exit(1)


@app.command("unlock")
def unlock_command(
    study: str,
    series: str,
    datastore: Datastore,
    force: Annotated[bool, typer.Option("--force", help="Really remove the lock.")] = False,
) -> None:
    """Remove a hanging series lock (a writer that died); needs --force."""
    if not force:
        _fail("unlock removes a lock another writer may hold; add --force to do it.", 2)
    try:
        fs, root = open_datastore(datastore)
        lock = SeriesLayout(root, study, series).lock
        if not fs.exists(lock):
            raise DicomflowError(f'Series "{series}" of study "{study}" has no lock.')
        fs.rm(lock)
    except (DicomflowError, OSError) as exc:
        _fail(str(exc))
    results.print(f"removed lock {lock}")
