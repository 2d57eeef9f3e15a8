"""An in-memory queue backend for the services tests: records jobs, runs them synchronously."""

import importlib
import json
import traceback
from collections.abc import Iterable
from typing import Any

from dicomflow.errors import UnknownDependencyError
from dicomflow.queue.job import Job, JobStatus


class FakeBackend:
    """Records every ``enqueue_many`` batch; :meth:`run_all` runs the jobs in this process."""

    url = "fake://"

    def __init__(self) -> None:
        self.store: dict[str, Job] = {}
        self.batches: list[list[Job]] = []

    def enqueue(self, job: Job) -> Job:
        return self.enqueue_many([job])[0]

    def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        batch = list(jobs)
        known = set(self.store)
        for job in batch:
            job.validate()  # what the real backends check: function name, JSON kwargs, ...
            unknown = [dep for dep in job.depends_on if dep not in known]
            if unknown:
                raise UnknownDependencyError(f"job {job.name} depends on unknown {unknown}")
            known.add(job.id)
        for job in batch:
            job.status = JobStatus.DEFERRED if job.depends_on else JobStatus.QUEUED
            self.store[job.id] = job
        self.batches.append(batch)
        return batch

    def fetch(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def jobs(self, status: JobStatus | None = None, limit: int = 1000) -> list[Job]:
        chosen = [job for job in self.store.values() if status is None or job.status is status]
        return chosen[::-1][:limit]

    def cancel(self, job_id: str) -> Job:
        job = self.store[job_id]
        job.status = JobStatus.CANCELED
        return job

    def requeue(self, job_id: str) -> Job:
        job = self.store[job_id]
        job.status = JobStatus.QUEUED
        return job

    def worker(self, *, name: str | None = None) -> Any:
        raise NotImplementedError("use run_all()")

    def close(self) -> None:
        pass

    def by_name(self, name: str) -> Job:
        [job] = [job for job in self.store.values() if job.name == name]
        return job

    def run_all(self) -> None:
        """Run every job whose dependencies finished; cancel those with a failed dependency."""
        progress = True
        while progress:
            progress = False
            for job in self.store.values():
                if job.status not in (JobStatus.QUEUED, JobStatus.DEFERRED):
                    continue
                dependencies = [self.store[dep] for dep in job.depends_on]
                if any(dep.status.is_unsuccessful for dep in dependencies):
                    job.status = JobStatus.CANCELED
                    progress = True
                elif all(dep.status is JobStatus.FINISHED for dep in dependencies):
                    self._run(job)
                    progress = True

    def _run(self, job: Job) -> None:
        module_name, _, qualname = job.function.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        kwargs = json.loads(json.dumps(job.kwargs))  # as if it crossed machines
        try:
            job.result = target(**kwargs)
            job.status = JobStatus.FINISHED
        except Exception:
            job.error = traceback.format_exc()
            job.status = JobStatus.FAILED
