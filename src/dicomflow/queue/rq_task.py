"""A dicomflow job's attempt inside an RQ worker, and what happens when it fails.

dicomflow's RQ worker (:mod:`dicomflow.queue.rq_worker`) dequeues
:class:`IsolatedJob` objects and hands them its warm
:class:`~dicomflow.queue.isolation.Isolation`; any other RQ worker calls the
job's function, :func:`perform`, which starts a fork server for the attempt.
Either way the attempt runs in its own process group and working directory,
with the job's timeout, its output captured, and records in the RQ job's meta
its number, outcome, error and log tail. A failed or timed-out attempt raises,
so that RQ retries it (``Retry``) or records the failure; :func:`on_failure`
then settles the job's dependants.
"""

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import AbandonedJobError
from rq.job import Job as RQJob
from rq.job import get_current_job

from dicomflow.errors import JobTimeoutError, ProcessingError, QueueError
from dicomflow.queue.isolation import Isolation, Outcome
from dicomflow.queue.job import JobStatus
from dicomflow.queue.options import QueueOptions
from dicomflow.queue.rq_dependants import settle_dependants
from dicomflow.queue.rq_mapping import (
    CANCEL_FIELD,
    MAX_INTERRUPTIONS,
    attempt_ending,
    dump_meta,
    to_job,
)

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


def perform(function: str, kwargs: dict[str, Any]) -> Any:
    """The RQ job's function, for RQ workers that are not dicomflow's."""
    rq_job = get_current_job()
    if rq_job is None:
        raise QueueError(f"{function} must run as an RQ job, in an RQ worker.")
    with Isolation() as isolation:
        return run_attempt(rq_job, isolation, QueueOptions(), None)


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
        outcome = Outcome(JobStatus.CANCELED, "The job was canceled before it started.")
    else:
        outcome = isolation.run(job, _Poll(rq_job, options, keepalive))
    rq_job.meta.update(outcome=outcome.status.value, error=outcome.error, log_tail=outcome.log_tail)
    rq_job.save_meta()  # type: ignore[no-untyped-call]
    if outcome.status is JobStatus.FINISHED:
        return outcome.result
    if outcome.status is JobStatus.CANCELED:
        rq_job.retries_left = 0
        raise QueueError(f"Job {job.label} was canceled.")
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


def on_failure(
    rq_job: RQJob,
    connection: Redis,
    kind: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    """RQ's failure callback: settle the dependants of a job that will not be retried."""
    try:
        if kind is AbandonedJobError:
            _abandoned(rq_job, connection)
        if rq_job.retries_left:
            return  # RQ retries it
        settle_dependants(rq_job, attempt_ending(rq_job), ending_now=True)
    except Exception:  # the job's own failure must stay what RQ records
        logger.exception("job %s: settling its dependants failed", rq_job.id)


def _abandoned(rq_job: RQJob, connection: Redis) -> None:
    """A worker died during the attempt (RQ found its execution expired): not the job's
    failure, so RQ queues it again without using up a retry, up to ``max_interruptions``
    times (recorded in its meta by the backend that queued it)."""
    attempt = rq_job.meta.get("attempts", 0)
    interruptions = int(rq_job.meta.get("interruptions", 0)) + 1
    limit = int(rq_job.meta.get(MAX_INTERRUPTIONS, QueueOptions.max_interruptions))
    error = f'Worker "{rq_job.worker_name}" stopped responding while running attempt {attempt}.'
    outcome = JobStatus.FAILED.value
    if connection.hexists(rq_job.key, CANCEL_FIELD):
        rq_job.retries_left = 0
        outcome = JobStatus.CANCELED.value
    elif interruptions <= limit:
        rq_job.retries_left = (rq_job.retries_left or 0) + 1  # RQ's retry takes it back
        error += f" Queued again (interruption {interruptions} of at most {limit})."
    else:
        rq_job.retries_left = 0
        error += (
            f" Its workers died under it {interruptions} times, more than max_interruptions"
            f" ({limit}) allows: it is not queued again."
        )
    rq_job.meta.update(outcome=outcome, error=error, interruptions=interruptions)
    rq_job.save_meta()  # type: ignore[no-untyped-call]
    logger.warning("job %s: %s", rq_job.id, error)
