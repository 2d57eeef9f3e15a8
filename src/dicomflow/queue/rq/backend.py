"""The scaled-out queue: RQ on a Redis server, workers on any machine.

``RQBackend("redis://host:6379/0")``; a worker anywhere runs
``python -m dicomflow.queue redis://host:6379/0`` (the job functions must be
importable there). How jobs map onto RQ is in :mod:`dicomflow.queue.rq.mapping`:
priorities are three queues, dependencies RQ's ``depends_on`` (with
``Dependency(allow_failure=True)``), timeouts RQ's job timeout, retries
``rq.Retry`` with doubling intervals (whole seconds: RQ's scheduler has a
resolution of one second). Dependants of failed or canceled jobs, which RQ
would leave deferred, are settled by :mod:`dicomflow.queue.rq.dependants`.
"""

import contextlib
import dataclasses
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from redis import Redis
from rq.callbacks import Callback
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Dependency, Retry
from rq.job import Job as RQJob
from rq.job import JobStatus as RQStatus
from rq.queue import Queue
from rq.registry import BaseRegistry, CanceledJobRegistry, FailedJobRegistry

from dicomflow.errors import QueueError, UnknownDependencyError
from dicomflow.queue.job import PRIORITY_ORDER, TERMINAL, UNSUCCESSFUL, Job, JobStatus
from dicomflow.queue.options import QueueOptions, split_url
from dicomflow.queue.rq.dependants import settle_dependants, settle_new
from dicomflow.queue.rq.mapping import (
    CANCEL_FIELD,
    FAILURE_CALLBACK,
    MAX_INTERRUPTIONS,
    QUEUE_NAMES,
    SERIALIZER,
    TASK_FUNCTION,
    initial_meta,
    kind_from,
    status_from,
    status_of,
    to_job,
)
from dicomflow.queue.rq.worker import RQWorker

logger = logging.getLogger(__name__)


class RQBackend:
    """A job queue on Redis through RQ (see the module documentation)."""

    def __init__(self, url: str, *, options: QueueOptions | None = None) -> None:
        redis_url, parsed = split_url(url, keep_unknown=True)
        self.url = url
        self.redis_url = redis_url
        self.options = options or parsed
        self.connection = Redis.from_url(redis_url)
        self.queues = {
            priority: Queue(name, connection=self.connection, serializer=SERIALIZER)
            for priority, name in QUEUE_NAMES.items()
        }

    def enqueue(self, job: Job) -> Job:
        return self.enqueue_many([job])[0]

    def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        batch = list(jobs)
        for job in batch:
            job.validate()
        self._check_dependencies(batch)
        queued: list[Job] = []
        plain: list[Job] = []
        for job in batch:
            if job.depends_on:
                queued += self._enqueue_plain(plain)
                plain = []
                queued.append(self._enqueue_dependant(job))
            else:
                plain.append(job)
        return queued + self._enqueue_plain(plain)

    def fetch(self, job_id: str) -> Job | None:
        rq_job = self._rq_job(job_id)
        return None if rq_job is None else to_job(rq_job)

    def jobs(self, status: JobStatus | None = None, limit: int = 1000) -> list[Job]:
        ids = sorted({job_id for queue in self.queues.values() for job_id in _job_ids(queue)})
        rq_jobs = [job for job in RQJob.fetch_many(ids, self.connection, SERIALIZER) if job]
        if status is not None:
            rq_jobs = [job for job in rq_jobs if status_of(job) is JobStatus(status)]
        rq_jobs.sort(key=lambda job: job.meta.get("dicomflow", {}).get("created_at", 0.0))
        return [to_job(job) for job in reversed(rq_jobs[-limit:])]

    def counts(self) -> dict[tuple[JobStatus, str], int]:
        """How many jobs are in each status, per kind, from the status and meta of every
        job the queues know (one round trip; results are not read)."""
        ids = sorted({job_id for queue in self.queues.values() for job_id in _job_ids(queue)})
        with self.connection.pipeline() as pipe:
            for job_id in ids:
                pipe.hmget(RQJob.key_for(job_id), "status", "meta")
            rows = pipe.execute()
        counts: Counter[tuple[JobStatus, str]] = Counter()
        for raw_status, raw_meta in rows:
            if raw_status is None:  # expired since it was listed
                continue
            meta = json.loads(raw_meta) if raw_meta else {}
            counts[(status_from(raw_status.decode(), meta), kind_from(meta))] += 1
        return dict(counts)

    def cancel(self, job_id: str) -> Job:
        rq_job = self._known(job_id)
        status = status_of(rq_job)
        if status in TERMINAL:
            raise QueueError(f"Job {job_id} is {status.value}; it cannot be canceled.")
        self.connection.hset(rq_job.key, CANCEL_FIELD, "1")  # seen by a worker starting it now
        if status is not JobStatus.STARTED:
            with contextlib.suppress(InvalidJobOperation):  # canceled meanwhile
                rq_job.cancel()
            settle_dependants(rq_job, "was canceled", ending_now=False)
        return self._fetched(job_id)

    def requeue(self, job_id: str) -> Job:
        rq_job = self._known(job_id)
        job = to_job(rq_job, with_result=False)
        if job.status not in UNSUCCESSFUL:
            raise QueueError(f"Job {job.label} is {job.status.value}; it cannot be requeued.")
        self._check_requeue_dependencies(job)
        self.connection.hdel(rq_job.key, CANCEL_FIELD)
        rq_job.meta.update(attempts=0, interruptions=0, outcome=None, error=None, log_tail=None)
        rq_job.retries_left = job.retries or None
        for registry_class in (FailedJobRegistry, CanceledJobRegistry):
            registry: BaseRegistry = registry_class(
                rq_job.origin, self.connection, serializer=SERIALIZER
            )
            try:
                registry.requeue(rq_job)
                break
            except InvalidJobOperation:
                continue
        else:
            self.queues[job.priority].enqueue_job(rq_job)
        return self._fetched(job_id)

    def lost(self, job_ids: Sequence[str]) -> list[str]:
        """Of ``job_ids``, the jobs RQ holds as queued that no queue lists and no registry
        holds: a worker popped them and died before it marked them started. (A worker
        between the two for a moment looks the same: see the watcher's grace period.)"""
        fetched = RQJob.fetch_many(list(job_ids), self.connection, SERIALIZER)
        queued = [j for j in fetched if j and j.get_status(refresh=False) == RQStatus.QUEUED]
        if not queued:
            return []
        listed = {job_id for queue in self.queues.values() for job_id in _job_ids(queue)}
        return [rq_job.id for rq_job in queued if rq_job.id not in listed]

    def requeue_lost(self, job_id: str) -> bool:
        """Put job ``job_id`` back in its queue if it is still :meth:`lost`; whether it was."""
        if job_id not in self.lost([job_id]):
            return False
        rq_job = self._known(job_id)
        Queue(rq_job.origin, connection=self.connection, serializer=SERIALIZER).enqueue_job(rq_job)
        return True

    def worker(self, *, name: str | None = None) -> RQWorker:
        return RQWorker(Redis.from_url(self.redis_url), self.options, name=name)

    def close(self) -> None:
        self.connection.close()

    def _rq_data(self, job: Job, depends_on: Dependency | None = None) -> dict[str, Any]:
        return {
            "func": TASK_FUNCTION,
            "args": (job.function, job.kwargs),
            "timeout": math.ceil(job.timeout_s),
            "result_ttl": math.ceil(self.options.result_ttl_s),
            "description": job.name or job.function,
            "depends_on": depends_on,
            "job_id": job.id,
            "meta": {**initial_meta(job), MAX_INTERRUPTIONS: self.options.max_interruptions},
            "retry": _retry(job),
            "on_failure": Callback(FAILURE_CALLBACK),
        }

    def _enqueue_plain(self, jobs: list[Job]) -> list[Job]:
        if not jobs:
            return []
        with self.connection.pipeline() as pipe:
            for priority in PRIORITY_ORDER:
                data = [
                    Queue.prepare_data(**self._rq_data(job))
                    for job in jobs
                    if job.priority is priority
                ]
                if data:
                    self.queues[priority].enqueue_many(data, pipeline=pipe)
            pipe.execute()
        return [dataclasses.replace(job, status=JobStatus.QUEUED, attempts=0) for job in jobs]

    def _enqueue_dependant(self, job: Job) -> Job:
        allow = job.allow_dependency_failure
        dependency = Dependency(jobs=list(job.depends_on), allow_failure=allow)
        rq_job = self.queues[job.priority].enqueue_call(**self._rq_data(job, dependency))
        if rq_job.get_status(refresh=False) == "deferred":
            settle_new(rq_job)
            rq_job.refresh()  # type: ignore[no-untyped-call]
        return to_job(rq_job, with_result=False)

    def _check_dependencies(self, batch: list[Job]) -> None:
        earlier: set[str] = set()
        for job in batch:
            unknown = [
                dependency
                for dependency in job.depends_on
                if dependency not in earlier and not RQJob.exists(dependency, self.connection)
            ]
            if unknown:
                raise UnknownDependencyError(
                    f"Job {job.label} depends on job {unknown[0]}, which the queue does not know"
                    " (enqueue a dependency before, or in the same call ahead of, its dependants)."
                )
            earlier.add(job.id)

    def _check_requeue_dependencies(self, job: Job) -> None:
        for dependency_id in job.depends_on:
            dependency = self._rq_job(dependency_id)
            status = JobStatus.FINISHED if dependency is None else status_of(dependency)
            allowed = TERMINAL if job.allow_dependency_failure else {JobStatus.FINISHED}
            if status not in allowed:
                raise QueueError(
                    f"Job {job.label} cannot be requeued: its dependency {dependency_id} is"
                    f" {status.value}; requeue it after its dependencies have finished."
                )

    def _rq_job(self, job_id: str) -> RQJob | None:
        try:
            return RQJob.fetch(job_id, connection=self.connection, serializer=SERIALIZER)
        except NoSuchJobError:
            return None

    def _known(self, job_id: str) -> RQJob:
        rq_job = self._rq_job(job_id)
        if rq_job is None:
            raise QueueError(f"Job {job_id} is not known to the queue.")
        return rq_job

    def _fetched(self, job_id: str) -> Job:
        job = self.fetch(job_id)
        if job is None:
            raise QueueError(f"Job {job_id} vanished from the queue.")
        return job


def _retry(job: Job) -> Retry | None:
    if not job.retries:
        return None
    delays = [math.ceil(job.retry_delay_s(attempt)) for attempt in range(1, job.retries + 1)]
    return Retry(max=job.retries, interval=delays)


def _job_ids(queue: Queue) -> set[str]:
    registries = (
        queue.started_job_registry,
        queue.deferred_job_registry,
        queue.finished_job_registry,
        queue.failed_job_registry,
        queue.canceled_job_registry,
        queue.scheduled_job_registry,
    )
    ids = set(queue.get_job_ids())
    for registry in registries:
        ids.update(registry.get_job_ids(cleanup=False))
    return ids
