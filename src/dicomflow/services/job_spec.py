"""A service job as its ``settings.json`` declares it: the types every services module shares.

:mod:`dicomflow.services.definitions` reads them from the file,
:mod:`dicomflow.services.graph` checks them together, the registry and the
scheduler use them.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from dicomflow.queue.job import Priority

DEFAULT_TIMEOUT_S = 3600.0


class Stage(StrEnum):
    """When a job runs for a series: the seed scheduler's ``preServices``, the registry's
    jobs, its ``postServices``. Every job of a later stage depends on the scheduled jobs
    of the earlier ones."""

    PRE = "pre"
    MAIN = "main"
    POST = "post"


@dataclass(frozen=True)
class JobSpec:
    """One job of a service, as declared in its ``settings.json``; ``deidentify``: the
    results the node sends from its output folder are de-identified first."""

    job_name: str
    worker: str
    callback: str
    depends_on: tuple[str, ...] = ()
    priority: Priority = Priority.DEFAULT
    timeout_s: float = DEFAULT_TIMEOUT_S
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    sort_position: float = 0.0
    description: str = ""
    channel: str = "default"
    disabled: bool = False
    deidentify: bool = False
    stage: Stage = Stage.MAIN
    service: str = ""
    source: Path | None = None

    @property
    def where(self) -> str:
        """``settings.json path: job "name"``, the start of every message about this job."""
        job = f'job "{self.job_name}"'
        return f"{self.source}: {job}" if self.source is not None else job
