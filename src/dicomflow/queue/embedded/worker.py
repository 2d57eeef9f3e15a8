"""The embedded queue's worker: claims ready jobs and runs each in its own process.

The worker opens its own SQLite connection in :meth:`EmbeddedWorker.work` (so
it may run in any process or thread), registers a session, then loops: every
``heartbeat_s`` it refreshes its heartbeat and settles jobs abandoned by dead
workers; it claims the next ready job and runs it through
:class:`~dicomflow.queue.isolation.Isolation`, checking every ``check_s``
whether the job was canceled; it records the outcome and carries on. When no
job is ready it sleeps ``poll_s``. In the main thread, SIGTERM or SIGINT asks
it to stop after the current job; a second one stops it at once (the job's
process group is killed and the attempt recorded as failed).
"""

import contextlib
import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from dicomflow.queue.embedded.attempt import claim, give_back, has_pending, record, still_ours
from dicomflow.queue.embedded.database import connect
from dicomflow.queue.embedded.liveness import Session, beat, recover_abandoned, register, unregister
from dicomflow.queue.isolation import Isolation
from dicomflow.queue.job import Job
from dicomflow.queue.options import QueueOptions
from dicomflow.queue.worker import default_worker_name

logger = logging.getLogger(__name__)


class EmbeddedWorker:
    """Runs the jobs of an embedded (SQLite) queue."""

    def __init__(
        self,
        path: Path,
        options: QueueOptions,
        *,
        name: str | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.path = path
        self.options = options
        self.name = name or default_worker_name()
        self.log_level = log_level
        self._stopping = threading.Event()
        self._next_beat = 0.0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop after the current job."""
        self._stopping.set()

    def work(self, *, burst: bool = False) -> None:
        """Run jobs until stopped or, with ``burst``, until none is queued or running."""
        connection = connect(self.path, self.options.synchronous)
        session = register(connection, self.name)
        logger.info("worker %s: started on %s", self.name, self.path)
        try:
            with _stop_on_signals(self), Isolation(self.options, log_level=self.log_level) as iso:
                self._loop(connection, session, iso, burst)
        finally:
            unregister(connection, session)
            connection.close()
            logger.info("worker %s: stopped", self.name)

    def _loop(
        self, connection: sqlite3.Connection, session: Session, isolation: Isolation, burst: bool
    ) -> None:
        while not self.stopping:
            self._maintain(connection, session)
            job = claim(connection, session)
            while job is not None:
                job = self._run(connection, session, isolation, job)
            if burst and not has_pending(connection):
                return
            self._stopping.wait(self.options.poll_s)

    def _maintain(self, connection: sqlite3.Connection, session: Session) -> None:
        if time.monotonic() < self._next_beat:
            return
        self._next_beat = time.monotonic() + self.options.heartbeat_s
        beat(connection, session)
        recover_abandoned(connection, self.options.stale_after_s, self.options.max_interruptions)

    def _run(
        self, connection: sqlite3.Connection, session: Session, isolation: Isolation, job: Job
    ) -> Job | None:
        """Run ``job``, record its outcome; the next job, already claimed unless stopping."""
        logger.info("job %s: %s, attempt %d", job.id, job.function, job.attempts)

        def poll() -> bool:
            self._maintain(connection, session)
            return not still_ours(connection, job.id, session)

        try:
            outcome = isolation.run(job, poll)
        except BaseException:
            give_back(connection, job, session)
            logger.warning("job %s: worker %s stopped during it; queued again", job.id, self.name)
            raise
        self._maintain(connection, session)
        status, following = record(connection, job, outcome, session, claim_next=not self.stopping)
        logger.info("job %s: %s", job.id, status.value if status else "taken over")
        return following


@contextlib.contextmanager
def _stop_on_signals(worker: EmbeddedWorker) -> Iterator[None]:
    """SIGTERM/SIGINT: stop after the current job; a second one: stop now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if worker.stopping:
            raise KeyboardInterrupt
        logger.info("worker %s: stopping after the current job", worker.name)
        worker.stop()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
