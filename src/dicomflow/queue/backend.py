"""The backend protocol every queue implementation follows, and the URL registry."""

import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from dicomflow.queue.job import Job, JobStatus


class Worker(Protocol):
    """Takes jobs from a backend and runs them."""

    name: str

    def work(self, *, burst: bool = False) -> None:
        """Run jobs until stopped (or, with ``burst``, until no job is ready)."""

    def stop(self) -> None:
        """Ask the worker to stop after the current job."""


class Backend(Protocol):
    """A job queue. Implementations: ``sqlite://`` (embedded) and ``redis://`` (RQ)."""

    url: str

    def enqueue(self, job: Job) -> Job:
        """Add ``job``: queued, or deferred while it has unfinished dependencies.

        Raises:
            UnknownDependencyError: if a dependency is not a known job.
        """

    def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        """Add a graph of jobs (dependencies may point at earlier jobs of the list)."""

    def fetch(self, job_id: str) -> Job | None:
        """The job's current state, or ``None`` if unknown."""

    def jobs(self, status: JobStatus | None = None, limit: int = 1000) -> list[Job]:
        """Jobs, newest first, optionally only those in ``status``."""

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued, deferred or started job (a started one is killed)."""

    def requeue(self, job_id: str) -> Job:
        """Put a failed, timed-out or canceled job back on its queue."""

    def worker(self, *, name: str | None = None) -> Worker:
        """A worker for this backend (run it with ``work()``)."""

    def close(self) -> None:
        """Release connections."""


BackendFactory = Callable[[str], Backend]
BACKENDS: dict[str, str] = {
    "sqlite": "dicomflow.queue.embedded.backend:EmbeddedBackend",
    "redis": "dicomflow.queue.rq.backend:RQBackend",
}


def open_backend(url: str) -> Backend:
    """Open the backend named by the scheme of ``url`` (``sqlite://``, ``redis://``)."""
    import importlib

    from dicomflow.errors import QueueError

    scheme = url.split("://", 1)[0] if "://" in url else ""
    target = BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(f"{name}://" for name in BACKENDS)
        raise QueueError(f'Queue URL "{url}" has an unknown scheme; use one of {known}.')
    module_name, _, class_name = target.partition(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = backend_class(url)
    return backend


class PerThreadBackend:
    """The queue at ``url``, opened once per thread on first use (an SQLite connection
    must stay on the thread that opened it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def get(self) -> Backend:
        backend: Backend | None = getattr(self._local, "backend", None)
        if backend is None:
            backend = open_backend(self.url)
            self._local.backend = backend
        return backend
