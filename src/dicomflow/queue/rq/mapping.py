"""How a dicomflow job lives in RQ, and how it is read back.

- Priorities are three RQ queues, ``dicomflow-high``, ``dicomflow-default``
  and ``dicomflow-low``, served in that order.
- The RQ job has the same id; it calls :func:`dicomflow.queue.rq_task.perform`
  with ``(function, kwargs)``, so RQ's tools show what it runs.
- The rest of the job (name, timeout, dependencies, retries, user meta) is in
  the RQ job's ``meta["dicomflow"]``; ``meta`` also holds what each attempt
  left: ``attempts``, ``outcome``, ``error`` and ``log_tail``; ``interruptions``
  counts the attempts whose worker died, up to ``max_interruptions``.
- A request to cancel a started job is the field ``dicomflow_cancel`` of the
  RQ job's hash, apart from ``meta``, which the running attempt rewrites.
- Everything is JSON (RQ's JSONSerializer): nothing in Redis is unpickled.
"""

import json
from datetime import datetime
from typing import Any

from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from dicomflow.queue.job import Job, JobStatus, Priority, job_kind

QUEUE_NAMES = {
    Priority.HIGH: "dicomflow-high",
    Priority.DEFAULT: "dicomflow-default",
    Priority.LOW: "dicomflow-low",
}
TASK_FUNCTION = "dicomflow.queue.rq_task.perform"
FAILURE_CALLBACK = "dicomflow.queue.rq_task.on_failure"
SPEC = "dicomflow"
CANCEL_FIELD = "dicomflow_cancel"
MAX_INTERRUPTIONS = "max_interruptions"
SERIALIZER = JSONSerializer

OUTCOMES = {status.value: status for status in (JobStatus.TIMED_OUT, JobStatus.CANCELED)}
STATUSES = {
    RQStatus.CREATED: JobStatus.QUEUED,
    RQStatus.QUEUED: JobStatus.QUEUED,
    RQStatus.SCHEDULED: JobStatus.QUEUED,  # waiting to be retried
    RQStatus.READY_TO_ENQUEUE: JobStatus.QUEUED,
    RQStatus.RATE_LIMITED: JobStatus.QUEUED,
    RQStatus.DEFERRED: JobStatus.DEFERRED,
    RQStatus.STARTED: JobStatus.STARTED,
    RQStatus.FINISHED: JobStatus.FINISHED,
    RQStatus.FAILED: JobStatus.FAILED,
    RQStatus.STOPPED: JobStatus.CANCELED,
    RQStatus.CANCELED: JobStatus.CANCELED,
}


def initial_meta(job: Job) -> dict[str, Any]:
    """The RQ meta of a job about to be queued."""
    spec = {
        "name": job.name,
        "priority": job.priority.value,
        "timeout_s": job.timeout_s,
        "depends_on": list(job.depends_on),
        "allow_dependency_failure": job.allow_dependency_failure,
        "retries": job.retries,
        "retry_backoff_s": job.retry_backoff_s,
        "created_at": job.created_at,
        "meta": job.meta,
    }
    return {SPEC: spec, "attempts": 0}


def dump_meta(meta: dict[str, Any]) -> bytes:
    """``meta`` as RQ stores it (what ``SERIALIZER.dumps`` does, typed)."""
    return json.dumps(meta).encode("utf-8")


def to_job(rq_job: RQJob, *, with_result: bool = True) -> Job:
    """The dicomflow view of ``rq_job``."""
    spec = dict(rq_job.meta.get(SPEC, {}))
    function, kwargs = _call(rq_job)
    status = status_of(rq_job)
    latest = rq_job.latest_result() if with_result and status.is_terminal else None
    return Job(
        function=function,
        kwargs=kwargs,
        id=rq_job.id,
        attempts=int(rq_job.meta.get("attempts", 0)),
        interruptions=int(rq_job.meta.get("interruptions", 0)),
        status=status,
        started_at=_timestamp(rq_job.started_at),
        ended_at=_timestamp(rq_job.ended_at),
        worker=rq_job.worker_name or None,
        error=rq_job.meta.get("error") or _exception(latest),
        log_tail=rq_job.meta.get("log_tail"),
        result=latest.return_value if latest is not None else None,
        **spec,
    )


def status_of(rq_job: RQJob) -> JobStatus:
    return status_from(rq_job.get_status(refresh=False), rq_job.meta)


def status_from(rq_status: str, meta: dict[str, Any]) -> JobStatus:
    """A job's status from RQ's status and the RQ job's ``meta``."""
    status = STATUSES.get(RQStatus(rq_status), JobStatus.QUEUED)
    if status is JobStatus.FAILED:
        return OUTCOMES.get(meta.get("outcome") or "", JobStatus.FAILED)
    return status


def kind_from(meta: dict[str, Any]) -> str:
    """A job's kind (:func:`~dicomflow.queue.job.job_kind`) from the RQ job's ``meta``."""
    spec = meta.get(SPEC)
    user = spec.get("meta") if isinstance(spec, dict) else None
    return job_kind(user if isinstance(user, dict) else {})


ENDINGS = {JobStatus.TIMED_OUT: "timed out", JobStatus.CANCELED: "was canceled"}


def ending(rq_job: RQJob) -> str:
    """How an ended job's dependants hear of it: "failed", "timed out" or "was canceled"."""
    return ENDINGS.get(status_of(rq_job), "failed")


def attempt_ending(rq_job: RQJob) -> str:
    """Like :func:`ending`, from the outcome the last attempt recorded (RQ has not yet)."""
    return ENDINGS.get(OUTCOMES.get(rq_job.meta.get("outcome") or "", JobStatus.FAILED), "failed")


def _call(rq_job: RQJob) -> tuple[str, dict[str, Any]]:
    if rq_job.func_name == TASK_FUNCTION and len(rq_job.args) == 2:
        function, kwargs = rq_job.args
        return str(function), dict(kwargs)
    return str(rq_job.func_name), dict(rq_job.kwargs)


def _exception(result: Result | None) -> str | None:
    if result is None or result.type is not Result.Type.FAILED:
        return None
    return result.exc_string or None


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()
