"""The job watcher: tells the node when the queue's jobs it waits for have ended, or
are gone from the queue (a Redis server restarted without its data).

On a queue that can tell (RQ: ``lost`` and ``requeue_lost``), it also puts back in
their queue the jobs it waits for that stayed queued in name only for
``lost_after_s``: popped by a worker that died before marking them started.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dicomflow.queue.backend import Backend, open_backend
from dicomflow.queue.job import Job, JobStatus

logger = logging.getLogger(__name__)

JobCallback = Callable[[Job], None]
UNREACHABLE_S = 1.0
"""How often a queue that did not answer is asked again."""
VanishedCallback = Callable[[str], None]
LOST_AFTER_S = 10.0
"""How long a job may stay queued in name only (in no queue) before it is queued again."""
SWEEP_S = 1.0
"""How often the queue is asked for such jobs."""


@dataclass(frozen=True)
class _Watch:
    ended: JobCallback
    vanished: VanishedCallback | None


def _ended(status: JobStatus | None) -> bool:
    return status is not None and status.is_terminal


class JobWatcher:
    """Polls the queue for watched jobs and calls back once each reaches a final state.

    The watcher opens its own connection to the queue (``url``) on its own thread.
    """

    def __init__(
        self, url: str, interval_s: float = 0.05, lost_after_s: float = LOST_AFTER_S
    ) -> None:
        self.url = url
        self.interval_s = interval_s
        self.lost_after_s = lost_after_s
        self._lost_since: dict[str, float] = {}
        self._next_sweep = 0.0
        self._watched: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._unreachable = False
        self._thread = threading.Thread(target=self._run, name="dicomflow-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def watch(
        self, job_id: str, callback: JobCallback, vanished: VanishedCallback | None = None
    ) -> None:
        """Call ``callback(job)`` once job ``job_id`` has finished, failed, timed out or
        was canceled; or ``vanished(job_id)``, if given, once the queue answers that it does
        not know the job (without it, an unknown job is waited for)."""
        with self._lock:
            self._watched[job_id] = _Watch(callback, vanished)
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._watched)

    def _run(self) -> None:
        backend = open_backend(self.url)
        try:
            while not self._stop.is_set():
                self._poll(backend)
                self._wake.wait(UNREACHABLE_S if self._unreachable else self.interval_s)
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
            except Exception as exc:
                self._lost(exc)
                return
            watched = [(i, w) for i, w in watched if i not in known or _ended(known[i])]
        failure: Exception | None = None
        queued: list[str] = []
        for job_id, watch in watched:
            try:
                job = backend.fetch(job_id)
            except Exception as exc:  # the others are read all the same
                failure = failure or exc
                continue
            if job is None and watch.vanished is None:
                continue
            if job is not None and not job.status.is_terminal:
                if job.status is JobStatus.QUEUED:
                    queued.append(job_id)
                continue
            with self._lock:
                self._watched.pop(job_id, None)
            self._call(job_id, job, watch)
        if failure is None:
            self._found()
            self._sweep(backend, queued)
        else:
            self._lost(failure)

    def _sweep(self, backend: Backend, queued: list[str]) -> None:
        """Queue again the ``queued`` jobs that have been in no queue for ``lost_after_s``."""
        lost, requeue = getattr(backend, "lost", None), getattr(backend, "requeue_lost", None)
        now = time.monotonic()
        if lost is None or requeue is None or now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_S
        try:
            found = set(lost(queued)) if queued else set()
            self._lost_since = {i: self._lost_since.get(i, now) for i in found}
            for job_id, since in list(self._lost_since.items()):
                if now - since >= self.lost_after_s and requeue(job_id):
                    del self._lost_since[job_id]
                    logger.warning(
                        "job %s: queued, but in no queue for %.0f s (its worker died taking"
                        " it?); queued again",
                        job_id,
                        now - since,
                    )
        except Exception as exc:
            self._lost(exc)

    def _lost(self, exc: Exception) -> None:
        """The queue did not answer: said once, then asked again every second."""
        if not self._unreachable:
            logger.warning("cannot read job states from the queue (%r); trying again", exc)
        self._unreachable = True

    def _found(self) -> None:
        if self._unreachable:
            logger.info("the queue answers again")
        self._unreachable = False

    def _call(self, job_id: str, job: Job | None, watch: _Watch) -> None:
        try:
            if job is not None:
                watch.ended(job)
            elif watch.vanished is not None:
                watch.vanished(job_id)
        except Exception:
            logger.exception("job %s: handling its end failed", job_id)
