"""The functions every RQ job record names: the job's function and its failure callback.

Their dotted paths, ``dicomflow.queue.rq_task.perform`` and
``dicomflow.queue.rq_task.on_failure``, are stored in each RQ job in Redis
(:data:`~dicomflow.queue.rq.mapping.TASK_FUNCTION`,
:data:`~dicomflow.queue.rq.mapping.FAILURE_CALLBACK`): they stay where they are, so
that jobs queued by any version run on any worker, dicomflow's or not.
:func:`perform` runs the attempt (see :mod:`dicomflow.queue.rq.isolated`);
:func:`on_failure` settles the dependants of a job that will not be retried.
"""

import logging
from types import TracebackType
from typing import Any

from redis import Redis
from rq.exceptions import AbandonedJobError
from rq.job import Job as RQJob
from rq.job import get_current_job

from dicomflow.errors import QueueError
from dicomflow.queue.isolation import Isolation
from dicomflow.queue.job import JobStatus
from dicomflow.queue.options import QueueOptions
from dicomflow.queue.rq.dependants import settle_dependants
from dicomflow.queue.rq.isolated import run_attempt
from dicomflow.queue.rq.mapping import CANCEL_FIELD, MAX_INTERRUPTIONS, attempt_ending

logger = logging.getLogger(__name__)


def perform(function: str, kwargs: dict[str, Any]) -> Any:
    """The RQ job's function, for RQ workers that are not dicomflow's."""
    rq_job = get_current_job()
    if rq_job is None:
        raise QueueError(f"{function} must run as an RQ job, in an RQ worker.")
    with Isolation() as isolation:
        return run_attempt(rq_job, isolation, QueueOptions(), None)


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
