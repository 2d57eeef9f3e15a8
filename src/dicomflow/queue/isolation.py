"""Runs one attempt of a job in its own process and says how it ended.

Each attempt gets a fresh temporary directory (the process's working
directory, removed afterwards, whatever happened), its own process group,
its output captured to a log file of any size, and a timeout after which the
whole group is SIGKILLed. A ``poll`` callback, called every ``check_s`` while
the job runs, lets the worker send heartbeats and ask for cancellation.
"""

import contextlib
import json
import logging
import os
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
from dicomflow.queue.child import Task
from dicomflow.queue.job import Job, JobStatus
from dicomflow.queue.launcher import Launcher
from dicomflow.queue.logtail import read_tail
from dicomflow.queue.options import QueueOptions

logger = logging.getLogger(__name__)

KILL_WAIT_S = 30.0


@dataclass
class Outcome:
    """How one attempt ended."""

    status: JobStatus
    error: str | None = None
    log_tail: str | None = None
    result: Any = None


@dataclass(frozen=True)
class _Ending:
    wait_status: int | None
    status: JobStatus | None = None  # TIMED_OUT or CANCELED when the worker killed it


class Isolation:
    """Runs attempts through one warm fork server (see :mod:`dicomflow.queue.launcher`)."""

    def __init__(self, options: QueueOptions | None = None, *, log_level: str = "INFO") -> None:
        self.options = options or QueueOptions()
        self.log_level = log_level
        self._launcher = Launcher(self.options.preload, log_level)

    def __enter__(self) -> "Isolation":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._launcher.close()

    def run(self, job: Job, poll: Callable[[], bool] | None = None) -> Outcome:
        """Run ``job`` once; ``poll()`` returning True cancels it."""
        folder = Path(tempfile.mkdtemp(prefix=f"dicomflow-job-{job.id[:16]}-"))
        try:
            task = self._task(job, folder)
            try:
                pid = self._launcher.launch(task)
            except QueueError as exc:
                return Outcome(JobStatus.FAILED, f"The job could not be started: {exc}")
            try:
                ending = self._wait(pid, job.timeout_s, poll)
            except QueueError as exc:
                return Outcome(JobStatus.FAILED, f"The job's fork server failed: {exc}")
            return _diagnose(job, task, ending)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _task(self, job: Job, folder: Path) -> Task:
        work_dir = folder / "work"
        work_dir.mkdir()
        log_file = folder / "job.log"
        if self.options.log_dir is not None:
            log_dir = Path(self.options.log_dir)
            log_dir.mkdir(parents=True, exist_ok=True)
            log_file = log_dir / f"{job.id}.{job.attempts}.log"
        return Task(
            job_id=job.id,
            function=job.function,
            kwargs=job.kwargs,
            work_dir=str(work_dir),
            log_file=str(log_file),
            result_file=str(folder / "result.json"),
            error_file=str(folder / "error.txt"),
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


def _diagnose(job: Job, task: Task, ending: _Ending) -> Outcome:
    tail = read_tail(Path(task.log_file)) or None
    if ending.status is JobStatus.TIMED_OUT:
        error = f"{job.function} timed out after {job.timeout_s:g} s; its process group was killed."
        return Outcome(JobStatus.TIMED_OUT, error, tail)
    if ending.status is JobStatus.CANCELED:
        error = "The job was canceled while it ran; its process group was killed."
        return Outcome(JobStatus.CANCELED, error, tail)
    result_file, error_file = Path(task.result_file), Path(task.error_file)
    if ending.wait_status == 0 and result_file.is_file():
        return Outcome(JobStatus.FINISHED, None, tail, json.loads(result_file.read_text()))
    if error_file.is_file():
        error = f"{job.function} raised an exception:\n{error_file.read_text()}"
        return Outcome(JobStatus.FAILED, error, tail)
    return Outcome(JobStatus.FAILED, _crash(job, ending.wait_status), tail)


def _crash(job: Job, wait_status: int | None) -> str:
    if wait_status is None:
        return f"The process of {job.function} could not be waited for."
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        return f"The process of {job.function} was killed by {name} before the function returned."
    code = os.WEXITSTATUS(wait_status)
    return f"The process of {job.function} exited with code {code} before the function returned."
