"""The folder of installed services, and loading them into schedulable jobs.

Layout under ``root``::

    registry/{service}/settings.json   the jobs (see dicomflow.services.definitions)
    registry/{service}/*.py            their callback functions
    modules/{service}/                 worker code (optional requirements.txt)
    venvs/{service}/                   the service's virtual environment, if it has one
    scheduler.json                     the seed scheduler's settings (dicomflow.services.stages)
    data/                              the seed's DATA folder, shared by the workers
    logs/                              the seed's LOGS folder

A service without ``settings.json`` has no jobs of its own; ``scheduler.json``
may run its functions as pre or post jobs (the seed's ``base`` service).

A service is installed when its ``registry/{service}`` folder exists; the
installer puts that folder in place last. Loading reports each broken service
on its own: the others still load, and jobs that depend on a broken service's
jobs make their own service broken too.
"""

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.callbacks import load_callbacks
from dicomflow.services.definitions import read_settings
from dicomflow.services.graph import dependency_order, graph_problems
from dicomflow.services.job_spec import JobSpec
from dicomflow.services.stages import SCHEDULER_FILE, SchedulerSettings, read_scheduler_settings

logger = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_service_name(name: str) -> str:
    """Return ``name`` if it is safe as a folder name, else raise.

    Raises:
        ServiceDefinitionError: for an empty, hidden, path-like or over-long name.
    """
    if not SERVICE_NAME.match(name) or ".." in name:
        raise ServiceDefinitionError(
            f'Service name "{name}" is not allowed; use letters, digits, "_", "-" and "." '
            "(not first), at most 100 characters."
        )
    return name


@dataclass(frozen=True)
class RegisteredJob:
    """A job of an installed service, ready to schedule."""

    spec: JobSpec
    callback: Callable[..., Any]
    module_dir: Path
    venv_dir: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.job_name

    @property
    def service(self) -> str:
        return self.spec.service


@dataclass
class LoadReport:
    """What :meth:`Registry.load` found: the good jobs in scheduling order, and the
    broken services with the reason each is broken."""

    jobs: list[RegisteredJob] = field(default_factory=list)
    errors: dict[str, ServiceDefinitionError] = field(default_factory=dict)
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_errors(self) -> None:
        """Raise one error naming every broken service, if there is any."""
        if self.errors:
            lines = [f'Service "{name}": {error}' for name, error in sorted(self.errors.items())]
            raise ServiceDefinitionError(
                f"{len(self.errors)} service(s) cannot be loaded:\n" + "\n".join(lines)
            )


class Registry:
    """The installed services under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def registry_dir(self, service: str) -> Path:
        return self.root / "registry" / check_service_name(service)

    def module_dir(self, service: str) -> Path:
        return self.root / "modules" / check_service_name(service)

    def venv_dir(self, service: str) -> Path:
        return self.root / "venvs" / check_service_name(service)

    @property
    def data_dir(self) -> Path:
        """The seed's ``DATA`` folder."""
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        """The seed's ``LOGS`` folder."""
        return self.root / "logs"

    def scheduler_settings(self) -> SchedulerSettings:
        """``scheduler.json`` (defaults when there is none).

        Raises:
            ServiceDefinitionError: naming the file and the field at fault.
        """
        return read_scheduler_settings(self.root)

    def services(self) -> list[str]:
        """Names of the installed services, sorted."""
        folder = self.root / "registry"
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and SERVICE_NAME.match(p.name))

    def read_specs(self) -> list[JobSpec]:
        """The jobs of every service whose settings can be read (callbacks not loaded)."""
        specs: list[JobSpec] = []
        for service in self.services():
            try:
                specs += self._read(service)
            except ServiceDefinitionError as exc:
                logger.warning('service "%s" has unreadable settings: %s', service, exc)
        try:
            specs += self.scheduler_settings().jobs
        except ServiceDefinitionError as exc:
            logger.warning("%s is unreadable: %s", SCHEDULER_FILE, exc)
        return specs

    def _read(self, service: str) -> list[JobSpec]:
        path = self.registry_dir(service) / SETTINGS_FILE
        return read_settings(path, service) if path.exists() else []

    def load_service(self, service: str) -> list[RegisteredJob]:
        """One service's jobs with their callbacks, checked on their own (not as a graph).

        Raises:
            ServiceDefinitionError: naming the file, job and field at fault.
        """
        return self._registered(service, self._read(service))

    def _registered(self, service: str, specs: list[JobSpec]) -> list[RegisteredJob]:
        folder = self.registry_dir(service)
        callbacks = load_callbacks(service, folder, specs, self.root / "registry")
        venv = self.venv_dir(service)
        module_dir = self.module_dir(service)
        return [
            RegisteredJob(
                spec, callbacks[spec.callback], module_dir, venv if venv.is_dir() else None
            )
            for spec in specs
        ]

    def load(self) -> LoadReport:
        """Every service's jobs, in scheduling order; broken services reported by name
        (``scheduler.json`` under that name)."""
        loaded: dict[str, list[RegisteredJob]] = {}
        problems: dict[str, list[str]] = {}
        for service in self.services():
            try:
                loaded[service] = self.load_service(service)
            except ServiceDefinitionError as exc:
                problems[service] = [str(exc)]
        settings = self._load_stages(loaded, problems)
        _drop_broken_graph(loaded, problems)
        by_spec = {id(job.spec): job for jobs in loaded.values() for job in jobs}
        order = dependency_order([job.spec for jobs in loaded.values() for job in jobs])
        errors = {
            name: ServiceDefinitionError("\n".join(lines)) for name, lines in problems.items()
        }
        for name, error in errors.items():
            logger.error('service "%s" cannot be loaded: %s', name, error)
        return LoadReport([by_spec[id(spec)] for spec in order], errors, settings)

    def _load_stages(
        self, loaded: dict[str, list[RegisteredJob]], problems: dict[str, list[str]]
    ) -> SchedulerSettings:
        """Read ``scheduler.json``; its pre and post jobs join ``loaded`` under its name."""
        try:
            settings = self.scheduler_settings()
            jobs = [job for spec in settings.jobs for job in self._registered(spec.service, [spec])]
        except ServiceDefinitionError as exc:
            problems[SCHEDULER_FILE] = [str(exc)]
            return SchedulerSettings()
        if jobs:
            loaded[SCHEDULER_FILE] = jobs
        return settings


def _drop_broken_graph(
    loaded: dict[str, list[RegisteredJob]], problems: dict[str, list[str]]
) -> None:
    """Move services with graph problems from ``loaded`` to ``problems`` until none are left
    (dropping a service can leave another one's dependency unknown)."""
    while True:
        owner = {id(job.spec): key for key, jobs in loaded.items() for job in jobs}
        specs = [job.spec for service in sorted(loaded) for job in loaded[service]]
        found = graph_problems(specs, broken=sorted(problems))
        if not found:
            return
        for problem in found:
            for spec in problem.jobs:
                key = owner.get(id(spec), spec.service)
                lines = problems.setdefault(key, [])
                if problem.message not in lines:
                    lines.append(problem.message)
                loaded.pop(key, None)
