"""Installing, removing, backing up and listing services in a registry folder.

An installable service is a folder with ``registry/`` (``settings.json`` and
the callback ``.py`` files) and ``module/`` (the worker code, optionally a
``requirements.txt``).

Installing is all or nothing. Installing over an installed service replaces it,
as the seed's ``service.sh install`` does, after backing it up to
``root/backups/`` (the old one stays if the new one fails). The settings, the
callbacks, the job names against the installed services and the dependencies are checked first (so
errors name the files you edit); both halves are then copied into a staging
folder under ``root``. When ``module/requirements.txt`` exists, the service's
virtual environment is built at ``venvs/{service}`` (in place: a virtual
environment cannot be moved), and the worker's module is looked up. Only then
is ``module/`` renamed to ``modules/{service}``, and last ``registry/`` to
``registry/{service}`` — the step that makes the service installed. Any
failure removes whatever was placed, and the staging folder.

A backup is a ``.tar.gz`` holding ``{service}/registry/`` and
``{service}/module/`` — the installable layout, so extracting it gives a
folder that :func:`install` accepts. The virtual environment is not backed
up; installing rebuilds it from ``requirements.txt``.
"""

import importlib.machinery
import logging
import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.callbacks import load_callbacks
from dicomflow.services.definitions import read_settings, worker_parts
from dicomflow.services.environment import create_environment, site_dirs, system_site_dirs
from dicomflow.services.graph import check_graph
from dicomflow.services.job_spec import JobSpec
from dicomflow.services.registry import SETTINGS_FILE, Registry, check_service_name

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
_CACHES = shutil.ignore_patterns("__pycache__")


def list_services(root: str | Path) -> list[str]:
    """Names of the services installed under ``root``, sorted."""
    return Registry(root).services()


def install(
    name: str, parent_path: str | Path, root: str | Path, *, backup_to: str | Path | None = None
) -> list[JobSpec]:
    """Install the service folder ``parent_path`` as ``name`` under ``root``; return its jobs.

    A service already installed as ``name`` is replaced, as the seed's ``service.sh
    install`` does, after a backup (see :func:`backup`) to ``backup_to`` (default
    ``root/backups/``). If the new one cannot be installed, the old one stays.

    Raises:
        ServiceDefinitionError: if the service is invalid, clashes with an installed one,
            or its requirements cannot be installed. Nothing is left installed then.
    """
    registry = Registry(root)
    source = Path(parent_path)
    _check_source(check_service_name(name), source)
    for folder in ("registry", "modules", "venvs"):
        (registry.root / folder).mkdir(parents=True, exist_ok=True)
    old = _set_aside(registry, name, backup_to)
    staging = Path(tempfile.mkdtemp(prefix=f".install-{name}-", dir=registry.root))
    placed: list[Path] = []
    try:
        specs = _stage(registry, name, source, staging, placed)
        _place(staging / "module", registry.module_dir(name), placed)
        _place(staging / "registry", registry.registry_dir(name), placed)
    except BaseException:
        for path in reversed(placed):
            shutil.rmtree(path, ignore_errors=True)
        for aside, path in old:
            aside.rename(path)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for aside, _ in old:
        shutil.rmtree(aside, ignore_errors=True)
    logger.info('service "%s" installed with job(s) %s', name, [s.job_name for s in specs])
    return specs


def _set_aside(
    registry: Registry, name: str, backup_to: str | Path | None
) -> list[tuple[Path, Path]]:
    """Back up the installed service ``name``, if there is one, and move its folders aside;
    return (aside, original) pairs, the registry folder first."""
    paths = [registry.registry_dir(name), registry.module_dir(name), registry.venv_dir(name)]
    present = [path for path in paths if path.exists()]
    if not present:
        return []
    dest = Path(backup_to) if backup_to is not None else registry.root / "backups"
    archive = (
        _write_backup(registry, name, dest) if paths[0].exists() or paths[1].exists() else None
    )
    logger.info('service "%s" is replaced; the old one is backed up to %s', name, archive)
    moved = []
    for path in present:
        aside = path.with_name(f".replacing-{path.name}-{uuid.uuid4().hex[:8]}")
        path.rename(aside)
        moved.append((aside, path))
    return moved


def _check_source(name: str, source: Path) -> None:
    for part in ("registry", "module"):
        if not (source / part).is_dir():
            raise ServiceDefinitionError(
                f'Service "{name}": {source} has no {part}/ folder; an installable service '
                "holds registry/ and module/."
            )
    registry = source / "registry"
    if not (registry / SETTINGS_FILE).is_file() and not (registry / "__init__.py").is_file():
        raise ServiceDefinitionError(
            f'Service "{name}": {source}/registry has no {SETTINGS_FILE} (nor, for a service '
            "whose functions scheduler.json runs, an __init__.py)."
        )


def _stage(
    registry: Registry, name: str, source: Path, staging: Path, placed: list[Path]
) -> list[JobSpec]:
    """Check the service (errors name the source's files), copy it to ``staging``, and
    build its environment if it has one."""
    settings = source / "registry" / SETTINGS_FILE
    specs = read_settings(settings, name) if settings.is_file() else []
    load_callbacks(name, source / "registry", specs, registry.root / "registry")
    check_graph(specs, installed=registry.read_specs())
    for half in ("registry", "module"):
        shutil.copytree(source / half, staging / half, ignore=_CACHES)
    _mark_executables(staging / "module")
    folders = [staging / "module"]
    requirements = staging / "module" / "requirements.txt"
    if requirements.is_file():
        venv = registry.venv_dir(name)
        placed.append(venv)
        create_environment(venv, requirements)
        folders += site_dirs(venv) + system_site_dirs(venv)
    _check_workers(name, specs, [*folders, registry.root / "modules"])
    return specs


def _mark_executables(folder: Path) -> None:
    """Make programs (ELF files, ``#!`` scripts) in ``folder`` executable: the seed's
    services ship binaries (``dcm2niix``, niftyreg) that git stores without the bit."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and not os.access(path, os.X_OK):
            with path.open("rb") as file:
                magic = file.read(4)
            if magic == b"\x7fELF" or magic.startswith(b"#!"):
                path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _check_workers(name: str, specs: list[JobSpec], folders: list[Path]) -> None:
    """Each worker's top-level module must be in the module folder (or be the folder,
    named after the service, as in the seed), its environment, the installed services'
    module folders or the running interpreter's path."""
    path = [str(folder) for folder in folders] + sys.path
    for spec in specs:
        top = worker_parts(spec.worker)[0].split(".")[0]
        if top == name and (folders[0] / "__init__.py").is_file():
            continue
        if importlib.machinery.PathFinder.find_spec(top, path) is None:
            raise ServiceDefinitionError(
                f'{spec.where}: field "worker" is "{spec.worker}", but no module "{top}" is '
                f"in the service's module/ folder or its environment."
            )


def _place(staging: Path, destination: Path, placed: list[Path]) -> None:
    staging.rename(destination)
    placed.append(destination)


def remove(name: str, root: str | Path, backup: str | Path | None = None) -> Path | None:
    """Remove the service ``name`` (all of it, or whatever a broken install left).

    With ``backup``, first write a backup there (see :func:`backup`) and return its path.

    Raises:
        ServiceDefinitionError: if nothing of the service is installed.
    """
    registry = Registry(root)
    paths = [registry.registry_dir(name), registry.module_dir(name), registry.venv_dir(name)]
    present = [path for path in paths if path.exists()]
    if not present:
        raise ServiceDefinitionError(f'Service "{name}" is not installed in {registry.root}.')
    archive = _write_backup(registry, name, Path(backup)) if backup is not None else None
    for path in present:  # registry first: the service stops being installed at once
        doomed = path.with_name(f".removing-{path.name}-{uuid.uuid4().hex[:8]}")
        path.rename(doomed)
        shutil.rmtree(doomed)
    logger.info('service "%s" removed', name)
    return archive


def backup(name: str, root: str | Path, dest: str | Path) -> Path:
    """Write ``registry/`` and ``module/`` of service ``name`` to a ``.tar.gz``; return its path.

    ``dest`` is the archive's path if it ends in ``.tar.gz`` or ``.tgz``, else a folder
    (created if needed) that gets ``{name}-{YYYYmmdd-HHMMSS}.tar.gz``.

    Raises:
        ServiceDefinitionError: if the service is not installed or the archive exists.
    """
    return _write_backup(Registry(root), name, Path(dest))


def _write_backup(registry: Registry, name: str, dest: Path) -> Path:
    halves = {"registry": registry.registry_dir(name), "module": registry.module_dir(name)}
    if not any(folder.is_dir() for folder in halves.values()):
        raise ServiceDefinitionError(f'Service "{name}" is not installed in {registry.root}.')
    archive = _archive_path(name, dest)
    partial = archive.with_name(f".{archive.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with tarfile.open(partial, "w:gz") as tar:
            for half, folder in halves.items():
                if folder.is_dir():
                    tar.add(folder, arcname=f"{name}/{half}", filter=_skip_caches)
        partial.rename(archive)
    finally:
        partial.unlink(missing_ok=True)
    logger.info('service "%s" backed up to %s', name, archive)
    return archive


def _archive_path(name: str, dest: Path) -> Path:
    if dest.name.endswith(ARCHIVE_SUFFIXES):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            raise ServiceDefinitionError(f'Service "{name}": backup {dest} exists already.')
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    archive = dest / f"{stem}.tar.gz"
    count = 1
    while archive.exists():
        archive = dest / f"{stem}-{count}.tar.gz"
        count += 1
    return archive


def _skip_caches(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in Path(member.name).parts else member
