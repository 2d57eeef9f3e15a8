"""What becomes of an RQ job's dependants when it fails, times out or is canceled.

RQ leaves the dependants of a failed job deferred forever (unless they allow
the failure), and those of a canceled job too. Here a deferred dependant is
marked failed, with the reason ("Dependency X failed."), and so are the jobs
waiting for it, transitively. A dependant declared with
``allow_dependency_failure`` runs instead, once all its dependencies have
ended; when RQ itself will enqueue it (the job that ended is about to be
FAILED and every other dependency is FINISHED or FAILED), it is left to RQ.

Each change of a dependant is a WATCHed transaction on its hash that checks
it is still deferred, so concurrent callers never act twice.
"""

import logging

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import DeferredJobRegistry, ReadyJobRegistry
from rq.utils import now

from dicomflow.queue.rq.mapping import SERIALIZER, dump_meta, ending

logger = logging.getLogger(__name__)

ENDED = {RQStatus.FINISHED, RQStatus.FAILED, RQStatus.CANCELED, RQStatus.STOPPED}
RQ_RELEASES = {RQStatus.FINISHED, RQStatus.FAILED}


def settle_dependants(rq_job: RQJob, word: str, *, ending_now: bool) -> None:
    """Fail (or start) the jobs waiting for ``rq_job``, which ended as ``word``.

    ``ending_now``: ``rq_job`` is not yet marked as ended in Redis (a failure
    callback runs before RQ records the failure).
    """
    pending = [(rq_job.id, word, ending_now)]
    while pending:
        parent_id, parent_word, unrecorded = pending.pop()
        ending_id = parent_id if unrecorded else None
        for dependant in _deferred_dependants(rq_job.connection, parent_id):
            if dependant.allow_dependency_failures:
                _start_if_settled(dependant, ending_id)
            elif _fail(dependant, f"Dependency {parent_id} {parent_word}."):
                pending.append((dependant.id, "failed", False))


def settle_new(rq_job: RQJob) -> None:
    """Settle a job just enqueued as deferred whose dependency may already have ended badly."""
    for dependency in _fetch(rq_job.connection, rq_job.dependency_ids):
        status = dependency.get_status(refresh=False)
        if status in (ENDED - {RQStatus.FINISHED}) and not rq_job.allow_dependency_failures:
            if _fail(rq_job, f"Dependency {dependency.id} {ending(dependency)}."):
                settle_dependants(rq_job, "failed", ending_now=False)
            return
    if rq_job.allow_dependency_failures:
        _start_if_settled(rq_job, None)


def _deferred_dependants(connection: Redis, job_id: str) -> list[RQJob]:
    members = connection.smembers(RQJob.dependents_key_for(job_id))
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    return [job for job in _fetch(connection, ids) if job.get_status(refresh=False) == "deferred"]


def _fetch(connection: Redis, job_ids: list[str]) -> list[RQJob]:
    jobs = RQJob.fetch_many(job_ids, connection=connection, serializer=SERIALIZER)
    return [job for job in jobs if job is not None]


def _fail(rq_job: RQJob, reason: str) -> bool:
    """Mark a deferred job failed with ``reason``; False if it was no longer deferred."""
    with rq_job.connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(rq_job.key)  # type: ignore[no-untyped-call]
                if pipe.hget(rq_job.key, "status") != b"deferred":
                    pipe.unwatch()
                    return False
                pipe.multi()
                DeferredJobRegistry(rq_job.origin, rq_job.connection).remove(rq_job, pipe)
                rq_job.ended_at = now()
                rq_job.meta.update(outcome="failed", error=reason)
                pipe.hset(rq_job.key, "meta", dump_meta(rq_job.meta))
                record_job_failure(rq_job, reason, pipe)
                pipe.execute()
            except WatchError:
                continue
            logger.info("job %s: failed: %s", rq_job.id, reason)
            return True


def _start_if_settled(rq_job: RQJob, ending_id: str | None) -> None:
    """Queue a job that allows dependency failure once all its dependencies have ended."""
    statuses = {
        dependency.id: dependency.get_status(refresh=False)
        for dependency in _fetch(rq_job.connection, rq_job.dependency_ids)
    }
    others = [status for job_id, status in statuses.items() if job_id != ending_id]
    if not all(status in ENDED for status in others):
        return
    if ending_id is not None and all(status in RQ_RELEASES for status in others):
        return  # RQ enqueues it once it has recorded the failure of ending_id
    registry = ReadyJobRegistry(rq_job.origin, rq_job.connection, serializer=SERIALIZER)
    with rq_job.connection.pipeline() as pipe:
        try:
            pipe.watch(rq_job.key)  # type: ignore[no-untyped-call]
            if pipe.hget(rq_job.key, "status") != b"deferred":
                return
            pipe.multi()
            registry.register_jobs([rq_job], pipeline=pipe)
            pipe.execute()
        except WatchError:
            return  # changed meanwhile: whoever changed it settles it
    registry.enqueue_jobs([rq_job.id])
