"""``dicomflow deid``: de-identify DICOM files with the PS3.15 Basic Profile, make a
pseudonym key, look a pseudonym up in the re-identification table.

``dicomflow deid IN OUT`` is short for ``dicomflow deid files IN OUT``. Options not given
come from the node's settings (``deid_*``), so the command and a node sharing a data
directory or a key file give the same pseudonyms.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from dicomflow.dicom.keys import shorten
from dicomflow.errors import DeidConfigError, DicomflowError

if TYPE_CHECKING:  # the de-identification modules (and pydicom, deid) load with a command
    from dicomflow.cli.deid_batch import Result, Summary
    from dicomflow.settings import NodeSettings

FILES_COMMAND = "files"
OPTIONS = {  # setting -> the option of `dicomflow deid files` that sets it
    "deid_profile": "--profile",
    "deid_options": "--options",
    "deid_key_file": "--key-file",
    "deid_reidentification_table": "--reidentification-table",
    "deid_safe_private": "--safe-private",
    "deid_pixel_cleaning": "--pixel-cleaning",
}


class _FilesByDefault(TyperGroup):
    """``dicomflow deid IN OUT`` runs ``files``: any first word that is no command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [FILES_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_FilesByDefault,
    add_completion=False,
    no_args_is_help=True,
    help="De-identify DICOM files (PS3.15 Basic Profile, keyed pseudonyms); "
    "`dicomflow deid IN OUT` is short for `dicomflow deid files IN OUT`.",
)
console = Console(stderr=True, soft_wrap=True)  # errors and progress
results = Console(soft_wrap=True, highlight=False)  # what a command reports back, on stdout


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.command(FILES_COMMAND)
def files_command(
    source: Annotated[Path, typer.Argument(metavar="IN", help="A file or folder (recursive).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The folder to write into.")],
    profile: Annotated[str | None, typer.Option(help="The profile: basic.")] = None,
    options: Annotated[
        list[str] | None,
        typer.Option(help="Profile options, comma-separated (e.g. clean_descriptors)."),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(help="The pseudonym key (0600); default: the node's deid_key_file."),
    ] = None,
    reidentification_table: Annotated[
        Path | None, typer.Option(help="Record what each pseudonym stands for here (0600).")
    ] = None,
    safe_private: Annotated[
        list[str] | None,
        typer.Option(help="CREATOR,GGGG,EE kept by retain_safe_private; repeatable."),
    ] = None,
    pixel_cleaning: Annotated[
        list[str] | None,
        typer.Option(help='Pixel-cleaning recipe for burned-in annotation, or "deid".'),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Worker processes (default: the cores).", min=1)
    ] = None,
) -> None:
    """De-identify IN into OUT/{patient}/{study}/{series}/{instance}.dcm, every name a
    pseudonym; instances with burned-in annotation are refused without a cleaning rule."""
    given = {
        "deid_profile": profile,
        "deid_options": _split(options),
        "deid_key_file": key_file,
        "deid_reidentification_table": reidentification_table,
        "deid_safe_private": safe_private,
        "deid_pixel_cleaning": pixel_cleaning,
    }
    sources, skipped = _sources(source, out)
    settings = _checked_settings({k: v for k, v in given.items() if v is not None})
    summary = _run(settings, sources, out, jobs or _cores())
    _report(summary, out, skipped)


def _split(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _sources(source: Path, out: Path) -> tuple[list[Path], int]:
    """The Part-10 files under ``source`` and how many other files were skipped."""
    from dicomflow.cli.sending import is_part10

    if not source.exists():
        _fail(f'IN "{source}" does not exist.', 2)
    if out.exists() and not out.is_dir():
        _fail(f'OUT "{out}" is not a folder.', 2)
    inside = source.is_dir() and out.resolve().is_relative_to(source.resolve())
    if inside:
        _fail(f'OUT "{out}" is inside IN "{source}": choose a folder outside it.', 2)
    if source.is_file():
        return [source], 0
    found = [
        Path(top, name)
        for top, _, names in os.walk(source)
        for name in sorted(names)
        if Path(top, name).is_file()
    ]
    dicom = sorted(path for path in found if is_part10(path))
    if not dicom:
        _fail(f'IN "{source}" holds no DICOM Part-10 file.', 2)
    return dicom, len(found) - len(dicom)


def _checked_settings(given: dict[str, Any]) -> "NodeSettings":
    """The settings with the options given, checked (profile, options, key file, table)."""
    from pydantic import ValidationError

    from dicomflow.cli.setting_error import setting_error
    from dicomflow.engine.deidentification import check_deid_settings
    from dicomflow.settings import build_settings

    try:
        settings = build_settings(**given)
    except ValidationError as exc:
        _fail(setting_error(exc, {name: f"option {OPTIONS[name]}" for name in given}), 2)
    except DicomflowError as exc:  # the settings file
        _fail(str(exc), 2)
    created = settings.deid_key_file is None and not settings.deid_key_path().exists()
    try:
        check_deid_settings(settings)
    except DeidConfigError as exc:
        _fail(_named(str(exc), given), 2)
    if created:
        console.print(f"created a new pseudonym key in {escape(str(settings.deid_key_path()))}")
    return settings


def _named(message: str, given: dict[str, Any]) -> str:
    """A settings error named by the option that gave the value, or by where it came from."""
    from dicomflow.cli.setting_error import origin

    setting, colon, rest = message.partition(":")
    if not colon or setting not in OPTIONS:
        return message
    if setting in given:
        return f"{OPTIONS[setting]}:{rest}"
    return f"{message} (setting {setting} from {origin(setting, {})})"


class _RateColumn(ProgressColumn):
    """Instances per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} instances/s", style="progress.data")


def _run(settings: "NodeSettings", sources: list[Path], out: Path, jobs: int) -> "Summary":
    from dicomflow.cli.deid_batch import run_batch

    columns = (
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("de-identify", total=len(sources))

        def advance(_: "Result") -> None:
            progress.advance(task)

        return run_batch(settings, sources, out, min(jobs, len(sources)), advance)


def _report(summary: "Summary", out: Path, skipped: int) -> None:
    from dicomflow.cli.deid_batch import Outcome

    for problem in sorted(summary.problems, key=lambda result: result.source):
        name = escape(shorten(problem.source, 200))
        results.print(f"[red]{problem.outcome}[/red] {name}: {escape(problem.reason)}")
    counts = summary.counts
    total = sum(counts.values())
    line = (
        f"{total} instance(s) into {escape(str(out))}: {counts[Outcome.WRITTEN]} written, "
        f"{counts[Outcome.REFUSED]} refused, {counts[Outcome.UNREADABLE]} unreadable, "
        f"{counts[Outcome.FAILED]} failed"
    )
    results.print(line + (f"; {skipped} other file(s) skipped" if skipped else ""))
    if summary.problems:
        raise typer.Exit(1)


@app.command("keygen")
def keygen_command(
    path: Annotated[Path, typer.Argument(help="The key file to create (never replaced).")],
) -> None:
    """Create a pseudonym key: 32 random bytes, readable by its owner alone (0600)."""
    from dicomflow.dicom.deid import create_key_file

    if path.exists() or path.is_symlink():
        _fail(f'Key file "{path}" exists already; not replaced (a new key changes pseudonyms).')
    try:
        create_key_file(path)
    except (DicomflowError, OSError) as exc:
        _fail(_message(exc))
    results.print(f"wrote a new key to {escape(str(path))} (mode 0600): keep it, and a copy, safe")


def _message(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f'Cannot use "{exc.filename}": {exc.strerror}.'
    return str(exc)


@app.command("reidentify")
def reidentify_command(
    pseudonym: Annotated[str, typer.Argument(help="A pseudonymous PatientID or UID.")],
    table: Annotated[
        Path | None,
        typer.Option(help="The re-identification table (default: deid_reidentification_table)."),
    ] = None,
) -> None:
    """Print what a pseudonym stands for (administrators only: the table is 0600)."""
    from dicomflow.dicom.deid import ReidentificationTable

    path = table or _table_setting()
    if not path.is_file():
        _fail(f'Re-identification table "{path}" is not a file.', 2)
    try:
        opened = ReidentificationTable(path)
        found = opened.lookup(pseudonym)
        opened.close()
    except DeidConfigError as exc:
        _fail(str(exc).replace("deid_reidentification_table:", "--table:", 1), 2)
    except (DicomflowError, OSError) as exc:
        _fail(_message(exc))
    if not found:
        _fail(f'No original recorded for "{shorten(pseudonym, 80)}" in {path}.')
    for entry in found:
        typer.echo(f"{entry.kind}\t{_printable(entry.original)}")  # tab-separated, raw


def _table_setting() -> Path:
    from pydantic import ValidationError

    from dicomflow.cli.setting_error import setting_error
    from dicomflow.settings import build_settings

    try:
        path = build_settings().deid_reidentification_table
    except ValidationError as exc:
        _fail(setting_error(exc, {}), 2)
    except DicomflowError as exc:
        _fail(str(exc), 2)
    if path is None:
        _fail("give --table (or set deid_reidentification_table).", 2)
    return path


def _printable(text: str) -> str:
    """An original as stored, its control characters escaped (it may be hostile)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
