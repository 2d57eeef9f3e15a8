"""Helpers of the queue tests: worker processes, waiting for jobs and processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dicomflow.queue import Backend, Job, JobStatus

JOBS_DIR = Path(__file__).resolve().parent
# Short intervals, so that abandoned jobs are found in seconds.
TEST_OPTIONS = "heartbeat_s=0.5&stale_after_s=2&check_s=0.1&poll_s=0.02"


class WorkerProcess:
    """``python -m dicomflow.queue URL`` in a process of its own."""

    def __init__(self, url: str, name: str, log: Path, *, burst: bool) -> None:
        self.name = name
        self.log = log
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(JOBS_DIR), *sys.path]))
        command = [sys.executable, "-m", "dicomflow.queue", url, "--name", name]
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [*command, "--burst"] if burst else command,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def wait(self, timeout_s: float = 60.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(backend: Backend, job_id: str, *statuses: JobStatus, timeout_s: float = 30.0) -> Job:
    """The job once it is in one of ``statuses`` (terminal ones if none are given)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = backend.fetch(job_id)
        if job is not None and _reached(job.status, statuses):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is still {job and job.status} after {timeout_s} s")
        time.sleep(0.05)


def _reached(status: JobStatus, statuses: tuple[JobStatus, ...]) -> bool:
    return status in statuses if statuses else status.is_terminal


def wait_for_file(path: Path, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} was not written within {timeout_s} s")
        time.sleep(0.05)
    return path.read_text()


def is_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not is_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def job(function: str, **fields: Any) -> Job:
    """A job for a function of ``tests/queue/jobs.py``."""
    return Job(function=f"jobs:{function}", **fields)
