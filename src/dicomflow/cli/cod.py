"""``dicomflow cod ingest|ls|get|verify|unlock``: a Cloud Optimized DICOM datastore."""

from collections import defaultdict
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import pydicom
import typer
from pydicom.errors import InvalidDicomError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from dicomflow.cli.sending import collect_files
from dicomflow.cod import CODObject, Instance, list_series, list_studies
from dicomflow.cod.catalog import Catalog, default_catalog, open_catalog
from dicomflow.cod.catalog_reindex import ReindexReport, reindex
from dicomflow.cod.catalog_sql import SQLCatalog
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.cod.query import SeriesDocument
from dicomflow.errors import DicomflowError

if TYPE_CHECKING:  # the de-identification modules load with --deid only
    from dicomflow.dicom.deid import Deidentifier
    from dicomflow.engine.archive_deid import ArchiveDeid

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True, soft_wrap=True)  # errors and progress
results = Console(soft_wrap=True, highlight=False)  # what a command reports back, on stdout

Datastore = Annotated[
    str, typer.Option("--datastore", "-d", help="Datastore URL (a local folder by default).")
]
CatalogOption = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="The catalog to keep: a SQLite file, sqlite:///path or postgresql://… "
        "(default: catalog.sqlite at the root of a local datastore).",
    ),
]
DeidOption = Annotated[
    bool,
    typer.Option(
        "--deid",
        help="Archive de-identified instances only, filed under pseudonymous UIDs (the "
        "node's deid_* settings; the options below override them).",
    ),
]
DeidProfile = Annotated[str | None, typer.Option(help="deid_profile: basic.")]
DeidOptions = Annotated[
    list[str] | None, typer.Option(help="deid_options, comma-separated or repeated.")
]
DeidKeyFile = Annotated[Path | None, typer.Option(help="deid_key_file: the pseudonym key (0600).")]
DeidTable = Annotated[
    Path | None, typer.Option(help="deid_reidentification_table: pseudonym -> original (0600).")
]
DeidList = Annotated[list[str] | None, typer.Option(help="See the setting of that name.")]
SeriesKey = tuple[str, str]
_opened: dict[str, Catalog] = {}  # per worker process: one connection for all its series


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


def group_by_series(
    paths: list[Path], deidentifier: "Deidentifier | None" = None
) -> tuple[dict[SeriesKey, list[str]], list[str]]:
    """Group files by (StudyInstanceUID, SeriesInstanceUID) -- their pseudonyms with a
    ``deidentifier`` -- and return the groups and errors."""
    groups: dict[SeriesKey, list[str]] = defaultdict(list)
    errors: list[str] = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
            if deidentifier is not None:
                identity = deidentifier.identity(ds)
                key = (identity.study_uid, identity.series_uid)
        except (InvalidDicomError, OSError, AttributeError, ValueError) as exc:
            errors.append(f'File "{path}" cannot be read: {exc}.')
            continue
        groups[key].append(str(path.resolve()))
    return dict(groups), errors


def ingest_series(
    datastore: str,
    study: str,
    series: str,
    files: list[str],
    catalog: str | None = None,
    deid: "ArchiveDeid | None" = None,
) -> SeriesReport:
    """Append and sync one series under its lock (its files de-identified first with
    ``deid``), then record it in ``catalog`` (runs in a worker process)."""
    report = SeriesReport()
    loaded, report.errors = _instances(files, deid)
    with CODObject(datastore, study, series, lock=True, deidentified=deid is not None) as cod:
        result = cod.append(loaded)
        if result.new or result.conflicts:
            cod.sync()
        instances = cod.get_metadata().instances if catalog else {}
        if catalog and instances:
            _catalog(catalog).record(SeriesDocument(study, series, dict(instances)))
    report.new, report.duplicates = len(result.new), len(result.duplicates)
    report.conflicts = len(result.conflicts)
    report.errors += [str(exc) for _, exc in result.errors]
    return report


def _instances(files: list[str], deid: "ArchiveDeid | None") -> tuple[list[Instance], list[str]]:
    """The files as instances (de-identified in memory with ``deid``), and the refusals
    (the files are left as they are)."""
    if deid is None:
        return [Instance(file) for file in files], []
    from dicomflow.engine.archive_deid import deidentified_groups

    gathered = deidentified_groups(files, deid.deidentifier())
    refused = [f'File "{uri}" not archived: {why}' for uri, why in gathered.refused]
    return [i for group in gathered.groups.values() for i in group], refused


def _catalog(location: str) -> Catalog:
    if location not in _opened:
        _opened[location] = open_catalog(location)
    return _opened[location]


def _catalog_location(datastore: str, catalog: str | None) -> str:
    """``catalog``, or the default one of a local datastore; a one-line error without."""
    location = catalog or default_catalog(datastore)
    if location is None:
        _fail(f'Datastore "{datastore}" is not a local folder: give --catalog.', 2)
    return location


def _run_ingest(
    datastore: str,
    groups: dict[SeriesKey, list[str]],
    workers: int | None,
    catalog: str | None,
    deid: "ArchiveDeid | None" = None,
) -> SeriesReport:
    total = SeriesReport()
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    count = sum(len(files) for files in groups.values())
    with Progress(*columns, console=console) as progress, ProcessPoolExecutor(workers) as pool:
        task = progress.add_task(f"ingest into {datastore}", total=count)
        futures: dict[Future[SeriesReport], SeriesKey] = {
            pool.submit(ingest_series, datastore, *key, files, catalog, deid): key
            for key, files in groups.items()
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
    catalog: CatalogOption = None,
    deid: DeidOption = False,
    deid_profile: DeidProfile = None,
    deid_options: DeidOptions = None,
    deid_key_file: DeidKeyFile = None,
    deid_reidentification_table: DeidTable = None,
    deid_safe_private: DeidList = None,
    deid_pixel_cleaning: DeidList = None,
) -> None:
    """Add Part-10 files to the datastore, one locked task per series, each recorded in
    the catalog; with --deid, de-identified (refused files are reported, not archived)."""
    given = {
        "deid_profile": deid_profile,
        "deid_options": _split(deid_options),
        "deid_key_file": deid_key_file,
        "deid_reidentification_table": deid_reidentification_table,
        "deid_safe_private": deid_safe_private,
        "deid_pixel_cleaning": deid_pixel_cleaning,
    }
    archive_deid = _archive_deid(given) if deid else None
    paths = collect_files(sources)
    if not paths:
        _fail("no DICOM files found in the given paths.", 2)
    location = catalog or default_catalog(datastore)
    if location is None:
        console.print("[yellow]warning:[/yellow] no catalog kept: give --catalog", highlight=False)
    try:
        if location is not None:
            open_catalog(location).close()  # a bad location fails before any work
    except DicomflowError as exc:
        _fail(str(exc), 2)
    deidentifier = archive_deid.deidentifier() if archive_deid is not None else None
    groups, errors = group_by_series(paths, deidentifier)
    run = (datastore, groups, workers, location, archive_deid)
    total = _run_ingest(*run) if groups else SeriesReport()
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


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _archive_deid(given: dict[str, Any]) -> "ArchiveDeid":
    """The node's de-identification settings with the options given, checked (a one-line
    error naming the setting otherwise)."""
    from pydantic import ValidationError

    from dicomflow.engine.archive_deid import archive_deid
    from dicomflow.settings import build_settings

    values = {key: value for key, value in given.items() if value is not None}
    try:
        checked = archive_deid(build_settings(**values, archive_deid=True))
    except ValidationError as exc:
        problems = (f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        _fail("; ".join(problems), 2)
    except DicomflowError as exc:
        _fail(str(exc), 2)
    if checked is None:  # archive_deid is on: never None
        _fail("archive_deid: not enabled", 2)
    return checked


@app.command("reindex")
def reindex_command(
    datastore: Annotated[str, typer.Argument(help="Datastore URL (or a local folder).")],
    catalog: CatalogOption = None,
    threads: Annotated[int, typer.Option(help="Metadata reads at once.", min=1)] = 16,
) -> None:
    """Rebuild the catalog from the datastore: record every series' metadata, forget the
    series that are gone. Safe while the node runs."""
    datastore = _existing(datastore)
    location = _catalog_location(datastore, catalog)
    try:
        opened = open_catalog(location, replace_old=True)  # tables of an older version
    except DicomflowError as exc:
        _fail(str(exc), 2)
    assert isinstance(opened, SQLCatalog)
    try:
        report = _run_reindex(datastore, opened, threads)
    except (DicomflowError, OSError) as exc:
        _fail(str(exc))
    finally:
        opened.close()
    for message in report.errors:
        _error(message)
    results.print(
        f"{report.found} series found, {report.recorded} recorded, {report.forgotten} "
        f"forgotten, {len(report.errors)} error(s)"
    )
    if report.errors:
        raise typer.Exit(1)


def _run_reindex(datastore: str, catalog: SQLCatalog, threads: int) -> ReindexReport:
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"reindex {datastore}", total=None)
        return reindex(
            datastore,
            catalog,
            threads,
            advance=lambda count: progress.advance(task, count),
            started=lambda total: progress.update(task, total=total),
        )


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
