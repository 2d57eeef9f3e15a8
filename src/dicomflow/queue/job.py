"""The job model: what to run, how, and what became of it."""

import json
import math
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from dicomflow.errors import QueueError
from dicomflow.queue.function import check_function_name


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


JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class JobKind(StrEnum):
    """What a job is for, as its ``meta["kind"]`` says (the dashboard's and metrics' label)."""

    PIPELINE = "pipeline"  # a pipeline's round
    ARCHIVE = "archive"  # writing a series to the archive
    SERVICE = "service"  # a registry service's job (its meta names the service)
    OTHER = "other"  # anything else


def job_kind(meta: dict[str, Any]) -> JobKind | str:
    """What a job is for, from its meta: ``meta["kind"]`` (a :class:`JobKind`, or the text a
    caller chose), else :attr:`JobKind.SERVICE` for a registry service's job (its meta names
    the service), else :attr:`JobKind.OTHER`."""
    kind = meta.get("kind")
    if isinstance(kind, str) and kind:
        return JobKind(kind) if kind in JobKind.__members__.values() else kind
    return JobKind.SERVICE if "service" in meta else JobKind.OTHER


def new_job_id() -> str:
    return uuid.uuid4().hex


def backoff_delay_s(retry_backoff_s: float, attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1-based): doubling each time."""
    return retry_backoff_s * 2.0 ** max(attempt - 1, 0)


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
    interruptions: int = 0  # attempts whose worker died under them (not failures)
    status: JobStatus = JobStatus.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    worker: str | None = None
    error: str | None = None
    log_tail: str | None = None
    result: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.priority = Priority(self.priority)
        self.status = JobStatus(self.status)

    @property
    def label(self) -> str:
        """How messages name the job: its id, and its name when it has one."""
        return f'{self.id} ("{self.name}")' if self.name else self.id

    def retry_delay_s(self, attempt: int) -> float:
        """How long to wait after failed attempt number ``attempt`` (1-based)."""
        return backoff_delay_s(self.retry_backoff_s, attempt)

    def validate(self) -> None:
        """Check that the job can be queued.

        Raises:
            QueueError: naming the field and its value.
        """
        check_function_name(self.function)
        if not isinstance(self.id, str) or not JOB_ID.fullmatch(self.id):
            raise QueueError(f"Job id {self.id!r} must be 1-128 letters, digits, '_' or '-'.")
        self._check_number("timeout_s", self.timeout_s, minimum=0.0, inclusive=False)
        self._check_number("retry_backoff_s", self.retry_backoff_s, minimum=0.0, inclusive=True)
        if not isinstance(self.retries, int) or self.retries < 0:
            raise QueueError(
                f"Job {self.label}: retries is {self.retries!r}; expected an int >= 0."
            )
        if self.id in self.depends_on:
            raise QueueError(f"Job {self.label} depends on itself.")
        for name in ("kwargs", "meta"):
            self._check_json(name, getattr(self, name))

    def _check_number(self, name: str, value: Any, *, minimum: float, inclusive: bool) -> None:
        ok = isinstance(value, int | float) and math.isfinite(value)
        if not ok or value < minimum or (value == minimum and not inclusive):
            bound = ">=" if inclusive else ">"
            raise QueueError(f"Job {self.label}: {name} is {value!r}; expected a number {bound} 0.")

    def _check_json(self, name: str, value: Any) -> None:
        if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
            raise QueueError(f"Job {self.label}: {name} must be a dict with str keys.")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise QueueError(f"Job {self.label}: {name} is not JSON-serialisable: {exc}.") from None

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
