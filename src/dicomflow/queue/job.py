"""The job model: what to run, how, and what became of it."""

import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    DEFERRED = "deferred"  # waiting for its dependencies
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_unsuccessful(self) -> bool:
        return self in UNSUCCESSFUL


TERMINAL = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT}
)
UNSUCCESSFUL = frozenset({JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT})


class Priority(StrEnum):
    """Queues, served in this order."""

    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


PRIORITY_ORDER = (Priority.HIGH, Priority.DEFAULT, Priority.LOW)


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Job:
    """A unit of work: ``function`` (``"module:qualname"``) called with ``kwargs``.

    ``kwargs``, ``result`` and ``meta`` must be JSON-serialisable, so that a job
    can cross machines.
    """

    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    id: str = field(default_factory=new_job_id)
    priority: Priority = Priority.DEFAULT
    timeout_s: float = 3600.0
    depends_on: list[str] = field(default_factory=list)
    allow_dependency_failure: bool = False
    retries: int = 0
    retry_backoff_s: float = 1.0
    attempts: int = 0
    status: JobStatus = JobStatus.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    worker: str | None = None
    error: str | None = None
    log_tail: str | None = None
    result: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["priority"] = self.priority.value
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        values = dict(data)
        values["priority"] = Priority(values.get("priority", "default"))
        values["status"] = JobStatus(values.get("status", "queued"))
        return cls(**values)
