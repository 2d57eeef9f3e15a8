"""Job functions for the queue tests (imported by the worker processes as ``jobs``)."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dicomflow.errors import DeidRefusedError, PermanentJobError

logger = logging.getLogger("jobs")


def record(path: str, label: str) -> str:
    """Append ``label`` to ``path`` (one line per run)."""
    with open(path, "a") as stream:
        stream.write(f"{label}\n")
    return label


def nap_and_record(path: str, label: str, seconds: float) -> str:
    time.sleep(seconds)
    return record(path, label)


def fail(message: str) -> None:
    raise ValueError(message)


class StudyGoneError(PermanentJobError, LookupError):
    """A job's own error that no retry can fix."""


def refuse(path: str) -> None:
    """Record the attempt, then refuse the instance as de-identification does."""
    record(path, "refused")
    raise DeidRefusedError("instance 1 (Secondary Capture Image Storage): burned-in annotation")


def give_up(path: str) -> None:
    """Record the attempt, then raise the job's own permanent error."""
    record(path, "gave up")
    raise StudyGoneError("study 1.2.3 is gone from the archive")


def crash(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def hang(pid_file: str) -> None:
    """Start a grandchild, write both pids, then sleep far past any test's timeout."""
    grandchild = subprocess.Popen(["sleep", "300"])
    Path(pid_file + ".tmp").write_text(f"{os.getpid()} {grandchild.pid}")
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(300)


def fail_times(path: str, failures: int) -> int:
    """Record the time of each attempt; fail the first ``failures`` of them."""
    with open(path, "a") as stream:
        stream.write(f"{time.time()}\n")
    attempt = len(Path(path).read_text().splitlines())
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return attempt


def hang_once(marker: str) -> str:
    """The first attempt writes its pid to ``marker`` and hangs; the next ones return "done"."""
    if os.path.exists(marker):
        return "done"
    Path(marker + ".tmp").write_text(str(os.getpid()))
    os.rename(marker + ".tmp", marker)
    time.sleep(300)
    return "too late"


def kill_worker(path: str) -> None:
    """Record the attempt, then kill the worker running it (the parent of the fork server
    that forked this process) and wait to be killed with it: a job that takes its worker
    down every time."""
    record(path, str(os.getpid()))
    stat = Path(f"/proc/{os.getppid()}/stat").read_text()
    os.kill(int(stat.rsplit(")", 1)[1].split()[1]), signal.SIGKILL)
    time.sleep(300)


def chatty(lines: int) -> int:
    """Print ``lines`` lines, then log a warning and write to stderr."""
    for number in range(lines):
        print(f"line {number}")
    logger.warning("a logged warning")
    print("written to stderr", file=sys.stderr)
    return lines


def where() -> dict[str, str]:
    """Write a file in the working directory; say where that was."""
    Path("scratch.txt").write_text("scratch")
    return {"cwd": os.getcwd()}


def allocate(megabytes: int) -> int:
    """Hold ``megabytes`` MiB of memory (touched, so that it is really there)."""
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"\1" * len(block[::4096])
    return len(block)


def escape(pid_file: str) -> None:
    """Start a daemon that leaves the process group (``setsid``) and whose parent exits
    (a double fork), write its pid, and return at once."""
    script = (
        "import os, sys, time\n"
        "if os.fork(): os._exit(0)\n"
        "os.setsid()\n"
        "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
        "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "time.sleep(300)\n"
    )
    subprocess.run([sys.executable, "-c", script, pid_file], check=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(pid_file) and time.monotonic() < deadline:
        time.sleep(0.01)


def shout(megabytes: int) -> int:
    """Print ``megabytes`` MiB of numbered lines, then one last line."""
    line = "x" * 90
    for number in range(megabytes * 1024 * 1024 // 100):
        print(f"{number:8d} {line}")
    print("the last line")
    return megabytes


def escape_and_hang(pid_file: str) -> None:
    """Start a daemon that left the process group (see ``escape``), then hang."""
    escape(pid_file)
    time.sleep(300)
