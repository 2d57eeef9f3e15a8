"""dicomflow's RQ worker: RQ's loop, each job in an isolated process from a warm fork server.

:class:`IsolatingWorker` is an RQ ``SimpleWorker`` (no work horse of its own)
whose jobs run through :class:`~dicomflow.queue.isolation.Isolation`: the
isolated process is the work horse, killed with its whole process group when
the job's timeout (its RQ ``timeout``) passes or when it is canceled. While a
job runs, the worker keeps its heartbeats every ``heartbeat_s``; its
executions expire ``heartbeat_s + stale_after_s`` after the last one, so when
a worker is ``kill -9``-ed, another worker's maintenance (every
``stale_after_s``) finds the job in RQ's StartedJobRegistry and retries it
(``Retry``) or fails it. RQ's scheduler (retries with backoff) runs in a
process that stops with its worker too.

When Redis does not answer, the worker does not exit: RQ waits for it while
idle (doubling waits up to ``RECONNECT_MAX_S``), and when RQ's loop ends on a
lost connection anyway (a job ending while Redis is down), :meth:`RQWorker.work`
starts it again after a wait that doubles from 1 s up to ``RECONNECT_MAX_S``.
A job interrupted so is found abandoned once Redis is back, and queued again.

RQ installs signal handlers, so the worker must run in a process's main thread.
"""

import logging
import math
import os
import signal
import stat
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.command import send_shutdown_command
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import StopRequested
from rq.job import Job as RQJob
from rq.queue import Queue
from rq.scheduler import RQScheduler
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty
from rq.worker import SimpleWorker, WorkerStatus

from dicomflow.queue.child import die_with_parent
from dicomflow.queue.isolation import Isolation
from dicomflow.queue.job import PRIORITY_ORDER
from dicomflow.queue.options import QueueOptions
from dicomflow.queue.rq.isolated import IsolatedJob
from dicomflow.queue.rq.mapping import QUEUE_NAMES, SERIALIZER
from dicomflow.queue.worker import default_worker_name

logger = logging.getLogger(__name__)

BACKSTOP_S = 60
LISTEN_S = 1.0
"""How long the thread listening for RQ's commands (shutdown, kill-horse) waits per poll."""
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 16.0
"""The longest wait between two attempts to reach a Redis server that does not answer."""
STEADY_S = 60.0
"""A worker loop that ran this long starts again after the first wait, not a longer one."""
LOST = (RedisConnectionError, RedisTimeoutError)


class BackstopDeathPenalty(UnixSignalDeathPenalty):
    """RQ's alarm, set ``BACKSTOP_S`` after the job's timeout: the isolation kills it first."""

    def __init__(
        self, timeout: int, exception: type[Exception] = JobTimeoutException, **kwargs: Any
    ) -> None:
        backstop = timeout + BACKSTOP_S if timeout > 0 else timeout
        super().__init__(backstop, exception, **kwargs)  # type: ignore[no-untyped-call]


class DyingScheduler(RQScheduler):
    """RQ's scheduler process, made to stop with the worker that forked it.

    It gets SIGTERM when its worker dies, on which RQ's scheduler releases its
    locks within a second, so that another worker's scheduler takes over at
    once instead of after the locks expire (a minute). It lets go of the sockets
    it inherited from its worker (their Redis connections): a worker killed
    while it waits for a job must be gone for Redis at once, or Redis hands the
    next job to that dead connection, and the job is lost.
    """

    def work(self) -> None:
        die_with_parent(signal.SIGTERM)
        _release_inherited_sockets()
        super().work()  # type: ignore[no-untyped-call]


def _release_inherited_sockets() -> None:
    """Point every socket descriptor of this (forked) process at ``/dev/null``: the
    sockets close for good once the worker's copies close too, and the descriptor
    numbers stay taken, so the worker's stale socket objects in this process touch
    nothing of the scheduler's own connections."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for name in os.listdir("/proc/self/fd"):
            descriptor = int(name)
            try:
                if descriptor != null and stat.S_ISSOCK(os.fstat(descriptor).st_mode):
                    os.dup2(null, descriptor)
            except OSError:  # the listing's own descriptor, closed meanwhile
                continue
    finally:
        os.close(null)


class IsolatingWorker(SimpleWorker):
    """An RQ worker that runs each job in its own process group (see the module)."""

    job_class = IsolatedJob
    death_penalty_class = BackstopDeathPenalty
    max_connection_wait_time = RECONNECT_MAX_S
    stop_wanted = False

    def __init__(
        self, queues: Sequence[Queue], *, options: QueueOptions, log_level: str, **kwargs: Any
    ) -> None:
        stale_s = math.ceil(options.stale_after_s)
        super().__init__(
            list(queues),
            job_class=IsolatedJob,
            serializer=SERIALIZER,
            worker_ttl=max(16, stale_s + 15),  # RQ blocks for worker_ttl - 15 s waiting for jobs
            maintenance_interval=stale_s,
            job_monitoring_interval=math.ceil(options.heartbeat_s),
            **kwargs,
        )
        self.options = options
        self.isolation = Isolation(options, log_level=log_level)

    def execute_job(self, job: RQJob, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        if isinstance(job, IsolatedJob):
            job.isolation = self.isolation
            job.options = self.options
            job.keepalive = partial(self.maintain_heartbeats, job, execution)
        self.perform_job(job, queue, execution)
        self.set_state(WorkerStatus.IDLE)

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stop_wanted = True  # RQ's own flag is set only when a job runs
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[RQJob, Queue] | None:
        try:
            self._enqueue_ready_jobs()
        except LOST as exc:  # RQ's dequeueing below waits for Redis
            self.log.debug("Worker %s: cannot look for ready jobs: %r", self.name, exc)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def _enqueue_ready_jobs(self) -> None:
        """Queue dependants RQ left ready but not enqueued.

        When two workers finish jobs at once, RQ may leave a dependant in its
        ReadyJobRegistry (a transaction lost to a concurrent one), to be queued
        by the next maintenance, minutes later. Each worker looks before it
        takes a job.
        """
        registries = [queue.ready_job_registry for queue in self.queues]
        with self.connection.pipeline(transaction=False) as pipe:
            for registry in registries:
                pipe.zcard(registry.key)
            counts = pipe.execute()
        for registry, count in zip(registries, counts, strict=True):
            if count:
                registry.cleanup()

    def subscribe(self) -> None:
        """RQ's, with a listener that polls every ``LISTEN_S`` instead of every minute.

        At shutdown RQ unsubscribes, then stops and joins the listening
        thread; redis-py (8.2 on) joins without a limit, and a thread that has
        already handled the unsubscription waits out its whole poll first. With
        RQ's 60 s poll a stopped worker could hang for a minute.
        """
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=LISTEN_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    def get_heartbeat_ttl(self, job: RQJob, working_time: float = 0.0) -> int:
        return math.ceil(self.options.heartbeat_s + self.options.stale_after_s)

    def teardown(self) -> None:
        try:
            super().teardown()  # type: ignore[no-untyped-call]
        finally:
            self.isolation.close()

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's own, with :class:`DyingScheduler` instead of ``RQScheduler``."""
        self.scheduler = scheduler = DyingScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if not scheduler.acquired_locks:
            return
        if not burst:
            scheduler.start()  # type: ignore[no-untyped-call]
            return
        try:
            scheduler.register_birth()
            scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            scheduler.release_locks()  # type: ignore[no-untyped-call]
            scheduler.register_death()


class RQWorker:
    """A worker of an RQ queue (the :class:`~dicomflow.queue.backend.Worker` protocol)."""

    def __init__(
        self,
        connection: Redis,
        options: QueueOptions,
        *,
        name: str | None = None,
        log_level: str = "INFO",
    ) -> None:
        self.name = name or default_worker_name()
        self.options = options
        self.log_level = log_level
        self.connection = connection
        self.rq_worker: IsolatingWorker | None = None

    def work(self, *, burst: bool = False) -> None:
        """Run jobs, high priority first, until stopped (or, with ``burst``, idle); while
        Redis does not answer, wait for it."""
        try:
            self._work_until_stopped(burst)
        except StopRequested:  # SIGTERM/SIGINT between RQ's loops, by the last loop's handler
            return

    def _work_until_stopped(self, burst: bool) -> None:
        wait_s = RECONNECT_FIRST_S
        while True:
            started = time.monotonic()
            try:
                self._work_once(burst)
                reason = "RQ's loop ended unasked (its log says why)"
            except LOST as exc:
                if burst:
                    raise
                reason = f"lost Redis ({exc!r})"
            if burst or self._stop_wanted():
                return
            if time.monotonic() - started >= STEADY_S:
                wait_s = RECONNECT_FIRST_S
            logger.warning("worker %s: %s; starting again in %g s", self.name, reason, wait_s)
            if self._wait(wait_s):
                return
            wait_s = min(wait_s * 2, RECONNECT_MAX_S)

    def stop(self) -> None:
        """Ask the worker, wherever it runs, to stop after its current job."""
        send_shutdown_command(self.connection, self.name)

    def _work_once(self, burst: bool) -> None:
        """One run of RQ's loop, by a new RQ worker (one that lost Redis cannot start again:
        its registration under this name may have been left behind, and is removed)."""
        if self.rq_worker is not None:
            self.connection.delete(self.rq_worker.key)
        self.rq_worker = self.new_rq_worker()
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self.rq_worker.work(burst=burst, with_scheduler=True, logging_level=level)

    def new_rq_worker(self) -> IsolatingWorker:
        """An RQ worker of this name for the three queues."""
        queues = [
            Queue(QUEUE_NAMES[priority], connection=self.connection, serializer=SERIALIZER)
            for priority in PRIORITY_ORDER
        ]
        return IsolatingWorker(
            queues,
            options=self.options,
            log_level=self.log_level,
            name=self.name,
            connection=self.connection,
        )

    def _stop_wanted(self) -> bool:
        return self.rq_worker is not None and self.rq_worker.stop_wanted

    def _wait(self, wait_s: float) -> bool:
        """Sleep ``wait_s``; whether a stop was asked for meanwhile (RQ's signal handlers
        of the ended loop stay installed and record it)."""
        deadline = time.monotonic() + wait_s
        try:
            while time.monotonic() < deadline and not self._stop_wanted():
                time.sleep(min(0.1, max(deadline - time.monotonic(), 0.0)))
        except (StopRequested, *LOST):  # how RQ's handler stops an idle loop, or fails to
            pass
        return self._stop_wanted()
