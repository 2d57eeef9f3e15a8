"""Local queue workers: processes the node starts and keeps running.

Each is ``python -m dicomflow.queue URL``; it dies with the node
(``PR_SET_PDEATHSIG``), and the node stops it with SIGTERM (the worker finishes
or abandons its job, which the queue then retries). A worker that ends while
the node runs (``kill -9``, the kernel's OOM killer, a crash of the interpreter)
is started again after a wait that doubles from 1 s up to 60 s while it keeps
dying, and is back to 1 s once a worker ran a minute; it is named
``node-{pid}-{n}.{restart}`` (on Redis a dead worker's name stays registered
until its heartbeat expires). Each
restart is logged and counted (``dicomflow_worker_restarts_total``); on the
embedded queue the dead worker's job is queued again at once instead of after
``stale_after_s``, and so are, when the node starts, the jobs of the local
workers of its previous run that were killed with it (``kill -9`` of its
process group).
"""

import ctypes
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlencode

from dicomflow import metrics
from dicomflow.engine.pipeline_ref import PipelineRef
from dicomflow.engine.round_job import PROCESS_ROUND_MODULE
from dicomflow.queue.embedded.backend import EmbeddedBackend

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PREFIX = "node-"
"""Local workers are named ``node-{the node's pid}-{n}``."""
STOP_TIMEOUT_S = 10.0
CHECK_S = 0.25
"""How often the node looks whether its workers are alive."""
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
STEADY_S = 60.0
"""A worker that ran this long is restarted after the first wait again, not a longer one."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Slot:
    """One of the ``count`` workers: its process now, and when to start the next one."""

    base: str
    index: int
    restarts: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = FIRST_BACKOFF_S
    restart_at: float | None = None

    @property
    def name(self) -> str:
        return self.base if not self.restarts else f"{self.base}.{self.restarts}"


class LocalWorkers:
    """``count`` worker processes for the queue at ``url``, restarted when they die
    (``on_restart()`` is called on the supervising thread after each restart)."""

    def __init__(
        self,
        url: str,
        count: int,
        *,
        python_path: Sequence[str] = (),
        log_level: str = "INFO",
        log_file: Path | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.count = count
        self.python_path = list(python_path)
        self.log_level = log_level
        self.log_file = log_file
        self.on_restart = on_restart
        self._slots = [_Slot(f"{PREFIX}{os.getpid()}-{index}", index) for index in range(count)]
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def processes(self) -> list[subprocess.Popen[bytes]]:
        """The worker processes running now (or ended and not yet restarted)."""
        return [slot.process for slot in self._slots if slot.process is not None]

    def start(self) -> None:
        if self._slots and self.url.startswith("sqlite:"):
            _settle_jobs_of_gone(self.url)
        self._stopping.clear()
        for slot in self._slots:
            self._spawn(slot)
        if self._slots:
            self._thread = threading.Thread(
                target=self._supervise, name="dicomflow-workers", daemon=True
            )
            self._thread.start()
        logger.info("started %d local worker(s) for %s", self.count, _safe(self.url))

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        processes = self.processes
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for slot in self._slots:
            slot.process = None

    def _supervise(self) -> None:
        while not self._stopping.wait(CHECK_S):
            for slot in self._slots:
                try:
                    self._check(slot)
                except Exception:  # the next check tries again
                    logger.exception("local worker %s: cannot check or restart it", slot.name)

    def _check(self, slot: _Slot) -> None:
        now = time.monotonic()
        if slot.restart_at is not None:
            if now >= slot.restart_at and not self._stopping.is_set():
                slot.restart_at = None
                slot.restarts += 1
                self._spawn(slot)
                metrics.WORKER_RESTARTS.inc()
                if self.on_restart is not None:
                    self.on_restart()
            return
        process = slot.process
        if process is None or process.poll() is None:
            return
        if now - slot.started_at >= STEADY_S:
            slot.backoff_s = FIRST_BACKOFF_S
        logger.warning(
            "local worker %s (pid %d) %s; starting it again in %g s",
            slot.name,
            process.pid,
            _ending(process.returncode),
            slot.backoff_s,
        )
        _settle_jobs_of(self.url, slot.name)
        slot.restart_at = now + slot.backoff_s
        slot.backoff_s = min(slot.backoff_s * 2, MAX_BACKOFF_S)

    def _spawn(self, slot: _Slot) -> None:
        environment = dict(os.environ)
        paths = [*self.python_path, *environment.get("PYTHONPATH", "").split(os.pathsep)]
        environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        command = [sys.executable, "-m", "dicomflow.queue", self.url]
        command += ["--name", slot.name, "--log-level", self.log_level]
        if self.log_file is not None:  # each its own rotated file; stray output below
            own = self.log_file.with_name(f"{self.log_file.stem}-{slot.index}.log")
            command += ["--log-file", str(own)]
        output = self._open_log()
        try:
            slot.process = subprocess.Popen(
                command,
                env=environment,
                preexec_fn=_die_with_parent,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
            )
        finally:
            if output is not None:
                output.close()
        slot.started_at = time.monotonic()

    def _open_log(self) -> BinaryIO | None:
        """Where the workers' stdout and stderr go: what does not pass through their
        logging (a crash of the worker itself). Their log records go to one rotated file
        each, ``workers-{n}.log``; their jobs' output to the job logs."""
        if self.log_file is None:
            return None
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        return self.log_file.open("ab")


def _settle_jobs_of(url: str, name: str) -> None:
    """On the embedded queue, queue again at once the job the dead worker ``name`` ran
    (elsewhere the queue finds it abandoned once its heartbeat is stale)."""
    if not url.startswith("sqlite:"):
        return
    try:
        backend = EmbeddedBackend(url)
        try:
            settled = backend.settle_dead_worker(name)
        finally:
            backend.close()
    except (sqlite3.Error, OSError) as exc:  # a full disk: the heartbeat check settles it later
        logger.warning("local worker %s: its started jobs cannot be settled now: %s", name, exc)
        return
    if settled:
        logger.info("local worker %s: its %d started job(s) settled", name, settled)


def _settle_jobs_of_gone(url: str) -> None:
    """Before the workers start: queue again at once the jobs that local workers of an
    earlier run of the node were running when they were killed with it (``kill -9`` of its
    process group), instead of after ``stale_after_s``."""
    try:
        backend = EmbeddedBackend(url)
        try:
            settled = backend.settle_gone_workers(PREFIX)
        finally:
            backend.close()
    except (sqlite3.Error, OSError) as exc:  # a full disk: the heartbeat check settles them later
        logger.warning("jobs of local workers of an earlier run cannot be settled now: %s", exc)
        return
    if settled:
        logger.info("%d job(s) of local workers of an earlier run queued again", settled)


def _ending(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _safe(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}"


def preload_modules(pipeline_class: object) -> list[str]:
    """What the workers' fork server imports once: dicomflow's job code, pydicom, numpy
    and the pipeline's module (by file, as ``module@path``)."""
    modules = [PROCESS_ROUND_MODULE, "pydicom", "numpy"]
    if pipeline_class is None:
        return modules
    ref = PipelineRef.of(pipeline_class)
    name = "__mp_main__" if ref.module in ("__main__", "__mp_main__") else ref.module
    return [*modules, f"{name}@{ref.path}" if ref.path else name]


def with_options(url: str, options: dict[str, object]) -> str:
    """``url`` with the queue ``options`` added (each unless the URL has it already)."""
    query = url.partition("?")[2]
    present = {pair.partition("=")[0] for pair in query.split("&") if pair}
    added = {key: value for key, value in options.items() if key not in present}
    if not added:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode(added)}"
