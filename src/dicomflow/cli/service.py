"""``dicomflow service install|remove|backup|list``: manage registry services."""

import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dicomflow.errors import DicomflowError
from dicomflow.services.install import backup, install, remove
from dicomflow.services.registry import Registry

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True, soft_wrap=True)  # errors
results = Console(soft_wrap=True, highlight=False)  # what a command reports back, on stdout

Root = Annotated[
    Path,
    typer.Option("--root", "-r", help="Services folder.", envvar="DICOMFLOW_SERVICES_DIRECTORY"),
]
DEFAULT_ROOT = Path("dicomflow-data/services")


def _fail(error: Exception) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(str(error))}", highlight=False)
    raise typer.Exit(1)


@app.command("install")
def install_command(
    name: str,
    path: Annotated[Path, typer.Option("--path", "-p", help="Folder with registry/ and module/.")],
    to: Annotated[
        Path | None,
        typer.Option("--backup", "-b", help="Where the replaced service's backup goes."),
    ] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Install a service (all or nothing); an installed one of that name is replaced,
    after a backup (default: ROOT/backups/)."""
    registry = Registry(root)
    archive = None
    try:
        if registry.registry_dir(name).exists() or registry.module_dir(name).exists():
            folder = to if to is not None else registry.root / "backups"
            archive = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz"
        specs = install(name, path, root, backup_to=archive)
    except (DicomflowError, OSError) as exc:
        _fail(exc)
    jobs = ", ".join(spec.job_name for spec in specs) or "no jobs of its own"
    replaced = f"; the one it replaced is backed up to {archive}" if archive else ""
    results.print(f"installed {name} ({jobs}) in {root}{replaced}")


@app.command("remove")
def remove_command(
    name: str,
    to: Annotated[Path | None, typer.Option("--backup", "-b", help="Back up first.")] = None,
    root: Root = DEFAULT_ROOT,
) -> None:
    """Remove a service, optionally backing it up first."""
    try:
        archive = remove(name, root, to)
    except (DicomflowError, OSError) as exc:
        _fail(exc)
    suffix = f" (backup: {archive})" if archive else ""
    results.print(f"removed {name}{suffix}")


@app.command("backup")
def backup_command(
    name: str,
    to: Annotated[Path, typer.Option("--backup", "-b", help="File or folder.")],
    root: Root = DEFAULT_ROOT,
) -> None:
    """Write a service's registry and module folders to a .tar.gz."""
    try:
        archive = backup(name, root, to)
    except (DicomflowError, OSError) as exc:
        _fail(exc)
    results.print(f"backed up {name} to {archive}")


@app.command("list")
def list_command(root: Root = DEFAULT_ROOT) -> None:
    """List installed services and their jobs."""
    if not root.is_dir():
        _fail(NotADirectoryError(f'Services folder "{root}" does not exist.'))
    report = Registry(root).load()
    table = Table(title=f"services in {root}")
    for column in ("service", "job", "worker", "depends on", "priority", "timeout"):
        table.add_column(column)
    for job in report.jobs:
        spec = job.spec
        table.add_row(
            job.service,
            spec.job_name,
            spec.worker,
            ", ".join(spec.depends_on),
            spec.priority.value,
            f"{spec.timeout_s:g} s",
        )
    results.print(table)
    for service, error in report.errors.items():
        console.print(f"[red]broken:[/red] {service}: {escape(str(error))}", highlight=False)
