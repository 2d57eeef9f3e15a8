"""The job watcher: tells the node when the queue's jobs it waits for have ended."""

import logging
import threading
from collections.abc import Callable

from dicomflow.queue.backend import Backend, open_backend
from dicomflow.queue.job import Job, JobStatus

logger = logging.getLogger(__name__)

JobCallback = Callable[[Job], None]


def _ended(status: JobStatus | None) -> bool:
    return status is not None and status.is_terminal


class JobWatcher:
    """Polls the queue for watched jobs and calls back once each reaches a final state.

    The watcher opens its own connection to the queue (``url``) on its own thread.
    """

    def __init__(self, url: str, interval_s: float = 0.05) -> None:
        self.url = url
        self.interval_s = interval_s
        self._watched: dict[str, JobCallback] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dicomflow-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def watch(self, job_id: str, callback: JobCallback) -> None:
        """Call ``callback(job)`` once job ``job_id`` has finished, failed, timed out or
        was canceled."""
        with self._lock:
            self._watched[job_id] = callback
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._watched)

    def _run(self) -> None:
        backend = open_backend(self.url)
        try:
            while not self._stop.is_set():
                self._poll(backend)
                self._wake.wait(self.interval_s)
                self._wake.clear()
        finally:
            backend.close()

    def _poll(self, backend: Backend) -> None:
        with self._lock:
            watched = list(self._watched.items())
        if not watched:
            return
        statuses = getattr(backend, "statuses", None)  # one query for all, where offered
        if statuses is not None:
            try:
                known = statuses([job_id for job_id, _ in watched])
            except Exception:
                logger.exception(
                    "cannot read the state of %d job(s) from %s", len(watched), self.url
                )
                return
            watched = [(i, callback) for i, callback in watched if _ended(known.get(i))]
        for job_id, callback in watched:
            try:
                job = backend.fetch(job_id)
            except Exception:
                logger.exception("job %s: cannot read its state from %s", job_id, self.url)
                continue
            if job is None or not job.status.is_terminal:
                continue
            with self._lock:
                self._watched.pop(job_id, None)
            try:
                callback(job)
            except Exception:
                logger.exception("job %s: handling its end failed", job_id)
