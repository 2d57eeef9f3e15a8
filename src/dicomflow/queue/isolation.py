"""Runs one attempt of a job in its own process and says how it ended.

Each attempt runs in an empty working directory (whatever an attempt leaves
there is removed afterwards), in its own process group, with a memory limit,
with its output captured to a log file (its head and tail past
``output_limit_bytes``), and with a timeout after which the whole group is
SIGKILLed; when it ends, every process it started is killed, also those that
left its process group. A
``poll`` callback, called every ``check_s`` while the job runs, lets the
worker send heartbeats and ask for cancellation.

The working directory, the log and the outcome file live in the worker's
scratch directory (``dicomflow-worker-<pid>-*`` in the system's temporary
directory, reused from one attempt to the next: creating and deleting files
is what costs most per job on a journaling file system). Scratch directories
left by workers that were killed are removed when the next worker starts.
"""

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from dicomflow.errors import QueueError
from dicomflow.queue.child import ERROR, PERMANENT, RESULT, Task, read_outcome
from dicomflow.queue.job import Job, JobStatus
from dicomflow.queue.launcher import Launcher
from dicomflow.queue.logtail import read_tail
from dicomflow.queue.options import QueueOptions

logger = logging.getLogger(__name__)

KILL_WAIT_S = 30.0
SCRATCH_PREFIX = "dicomflow-worker-"
SCRATCH_NAME = re.compile(rf"{SCRATCH_PREFIX}(\d+)-")
MEMORY_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS)


@dataclass
class AttemptOutcome:
    """How one attempt ended."""

    status: JobStatus
    error: str | None = None
    log_tail: str | None = None
    result: Any = None
    retryable: bool = True
    """False when the function raised a :class:`~dicomflow.errors.PermanentJobError`: the
    attempt is the job's last, whatever retries it has left."""


@dataclass(frozen=True)
class _Ending:
    wait_status: int | None
    status: JobStatus | None = None  # TIMED_OUT or CANCELED when the worker killed it


class Isolation:
    """Runs attempts through one warm fork server (see :mod:`dicomflow.queue.launcher`)."""

    def __init__(self, options: QueueOptions | None = None, *, log_level: str = "INFO") -> None:
        self.options = options or QueueOptions()
        self._launcher = Launcher(self.options.preload, log_level)
        self._scratch: Path | None = None

    def __enter__(self) -> "Isolation":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._launcher.close()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def run(self, job: Job, poll: Callable[[], bool] | None = None) -> AttemptOutcome:
        """Run ``job`` once; ``poll()`` returning True cancels it."""
        task = self._task(job)
        try:
            try:
                pid = self._launcher.launch(task)
                ending = self._wait(pid, job.timeout_s, poll)
            except QueueError as exc:
                return AttemptOutcome(JobStatus.FAILED, f"The job could not be run: {exc}")
            return _diagnose(job, task, ending)
        finally:
            _empty(Path(task.work_dir))

    def _task(self, job: Job) -> Task:
        if self._scratch is None:
            _remove_stale_scratch()
            self._scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        work_dir = self._scratch / "work"
        if not work_dir.is_dir():
            work_dir.mkdir()
        log_file = self._scratch / "job.log"
        if self.options.log_dir is not None:
            log_dir = Path(self.options.log_dir)
            log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            log_file = log_dir / f"{job.id}.{job.attempts}.log"
        return Task(
            token=f"{job.id}.{job.attempts}.{time.time_ns()}",
            function=job.function,
            kwargs=job.kwargs,
            work_dir=str(work_dir),
            log_file=str(log_file),
            outcome_file=str(self._scratch / "outcome"),
            job_id=job.id,
            memory_limit_bytes=self.options.job_memory_limit(),
            output_limit_bytes=self.options.output_limit_bytes,
        )

    def _wait(self, pid: int, timeout_s: float, poll: Callable[[], bool] | None) -> _Ending:
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._kill(pid, JobStatus.TIMED_OUT)
                wait_status = self._launcher.wait(min(self.options.check_s, remaining))
                if wait_status is not None:
                    kill_group(pid, reaped=True)  # whatever it left running
                    return _Ending(wait_status)
                if poll is not None and poll():
                    return self._kill(pid, JobStatus.CANCELED)
        except BaseException:
            kill_group(pid, reaped=False)
            raise

    def _kill(self, pid: int, status: JobStatus) -> _Ending:
        kill_group(pid, reaped=False)
        wait_status = self._launcher.wait(KILL_WAIT_S)
        kill_group(pid, reaped=True)
        return _Ending(wait_status, status)


def _empty(work_dir: Path) -> None:
    """Remove what an attempt left in its working directory (an empty one is reused)."""
    try:
        if not os.listdir(work_dir):
            return
    except OSError:
        pass
    shutil.rmtree(work_dir, ignore_errors=True)


def kill_group(pid: int, *, reaped: bool) -> None:
    """SIGKILL the process group that ``pid`` leads.

    Before the process is reaped, also try the process itself (it may not have
    called ``setsid()`` yet); after, never: its pid may already be reused.
    """
    try:
        os.killpg(pid, signal.SIGKILL)
        return
    except (ProcessLookupError, PermissionError):
        pass
    if not reaped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _remove_stale_scratch() -> None:
    """Remove the scratch directories of workers that no longer run."""
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        match = SCRATCH_NAME.match(path.name)
        if match is None or _alive(int(match.group(1))):
            continue
        logger.info("removing %s, left by a worker that stopped", path)
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _diagnose(job: Job, task: Task, ending: _Ending) -> AttemptOutcome:
    tail = read_tail(Path(task.log_file)) or None
    if ending.status is JobStatus.TIMED_OUT:
        error = f"{job.function} timed out after {job.timeout_s:g} s; its process group was killed."
        return AttemptOutcome(JobStatus.TIMED_OUT, error, tail)
    if ending.status is JobStatus.CANCELED:
        error = "The job was canceled while it ran; its process group was killed."
        return AttemptOutcome(JobStatus.CANCELED, error, tail)
    outcome = read_outcome(task)
    if ending.wait_status == 0 and outcome is not None and outcome[0] == RESULT:
        return AttemptOutcome(JobStatus.FINISHED, None, tail, json.loads(outcome[1]))
    if outcome is not None and outcome[0] == ERROR:
        return AttemptOutcome(
            JobStatus.FAILED, f"{job.function} raised an exception:\n{outcome[1]}", tail
        )
    if outcome is not None and outcome[0] == PERMANENT:
        error = f"{job.function} raised an exception that no retry can fix (not retried):"
        return AttemptOutcome(JobStatus.FAILED, f"{error}\n{outcome[1]}", tail, retryable=False)
    return AttemptOutcome(JobStatus.FAILED, _crash(job, task, ending.wait_status), tail)


def _crash(job: Job, task: Task, wait_status: int | None) -> str:
    if wait_status is None:
        return f"The process of {job.function} could not be waited for."
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        text = f"The process of {job.function} was killed by {name} before the function returned."
        if task.memory_limit_bytes and number in MEMORY_SIGNALS:
            limit = task.memory_limit_bytes
            text += f" Its memory limit is {limit} bytes (setting job_memory_limit_bytes)."
        return text
    code = os.WEXITSTATUS(wait_status)
    return f"The process of {job.function} exited with code {code} before the function returned."
