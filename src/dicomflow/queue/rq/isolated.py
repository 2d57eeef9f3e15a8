"""A dicomflow job's attempt inside an RQ worker.

dicomflow's RQ worker (:mod:`dicomflow.queue.rq.worker`) dequeues
:class:`IsolatedJob` objects and hands them its warm
:class:`~dicomflow.queue.isolation.Isolation`; any other RQ worker calls the
job's function, :func:`dicomflow.queue.rq_task.perform`, which starts a fork
server for the attempt. Either way the attempt runs in its own process group and
working directory, with the job's timeout, its output captured, and records in
the RQ job's meta its number, outcome, error and log tail. A failed or timed-out
attempt raises, so that RQ retries it (``Retry``) or records the failure; one that
no retry can fix (:class:`~dicomflow.errors.PermanentJobError`) has its retries
left set to none first.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.job import Job as RQJob

from dicomflow.errors import JobTimeoutError, ProcessingError, QueueError
from dicomflow.queue.isolation import AttemptOutcome, Isolation
from dicomflow.queue.job import JobStatus
from dicomflow.queue.options import QueueOptions
from dicomflow.queue.rq.mapping import CANCEL_FIELD, dump_meta, to_job

logger = logging.getLogger(__name__)


class IsolatedJob(RQJob):
    """An RQ job that runs through its worker's warm isolation (set by the worker)."""

    isolation: Isolation | None = None
    options: QueueOptions | None = None
    keepalive: Callable[[], None] | None = None

    def _execute(self) -> Any:
        if self.isolation is None:
            return super()._execute()
        return run_attempt(self, self.isolation, self.options or QueueOptions(), self.keepalive)


def run_attempt(
    rq_job: RQJob,
    isolation: Isolation,
    options: QueueOptions,
    keepalive: Callable[[], None] | None,
) -> Any:
    """Run one attempt of ``rq_job``; its result, or an exception if it did not finish."""
    job = to_job(rq_job, with_result=False)
    job.attempts += 1
    if _begin(rq_job, job.attempts):
        outcome = AttemptOutcome(JobStatus.CANCELED, "The job was canceled before it started.")
    else:
        outcome = isolation.run(job, _Poll(rq_job, options, keepalive))
    rq_job.meta.update(outcome=outcome.status.value, error=outcome.error, log_tail=outcome.log_tail)
    rq_job.save_meta()  # type: ignore[no-untyped-call]
    if outcome.status is JobStatus.FINISHED:
        return outcome.result
    if outcome.status is JobStatus.CANCELED:
        rq_job.retries_left = 0
        raise QueueError(f"Job {job.label} was canceled.")
    if not outcome.retryable:
        rq_job.retries_left = 0  # RQ records the failure; on_failure settles the dependants
    if outcome.status is JobStatus.TIMED_OUT:
        raise JobTimeoutError(outcome.error)
    raise ProcessingError(outcome.error)


def _begin(rq_job: RQJob, attempt: int) -> bool:
    """Record the attempt's start; whether the job was canceled meanwhile."""
    rq_job.meta.update(attempts=attempt, outcome=None, error=None, log_tail=None)
    with rq_job.connection.pipeline(transaction=False) as pipe:
        pipe.hset(rq_job.key, "meta", dump_meta(rq_job.meta))
        pipe.hexists(rq_job.key, CANCEL_FIELD)
        _, canceled = pipe.execute()
    return bool(canceled)


class _Poll:
    """Called while the attempt runs: keeps the worker's heartbeat, asks for cancellation."""

    def __init__(
        self, rq_job: RQJob, options: QueueOptions, keepalive: Callable[[], None] | None
    ) -> None:
        self.rq_job = rq_job
        self.interval_s = options.heartbeat_s
        self.keepalive = keepalive
        self.next_beat = time.monotonic() + self.interval_s
        self.lost = False

    def __call__(self) -> bool:
        """Whether the job was canceled; while Redis does not answer, the job runs on."""
        try:
            if self.keepalive is not None and time.monotonic() >= self.next_beat:
                self.next_beat = time.monotonic() + self.interval_s
                self.keepalive()
            canceled = bool(self.rq_job.connection.hexists(self.rq_job.key, CANCEL_FIELD))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if not self.lost:
                logger.warning(
                    "job %s: Redis does not answer (%r); the job runs on", self.rq_job.id, exc
                )
            self.lost = True
            return False
        self.lost = False
        return canceled
