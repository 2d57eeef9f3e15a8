"""Local queue workers: processes the node starts for the embedded queue.

Each is ``python -m dicomflow.queue URL``; it dies with the node
(``PR_SET_PDEATHSIG``), and the node stops it with SIGTERM (the worker finishes
or abandons its job, which the queue then retries).
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 10.0


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalWorkers:
    """``count`` worker processes for the queue at ``url``."""

    def __init__(
        self,
        url: str,
        count: int,
        *,
        python_path: Sequence[str] = (),
        log_level: str = "INFO",
        log_file: Path | None = None,
    ) -> None:
        self.url = url
        self.count = count
        self.python_path = list(python_path)
        self.log_level = log_level
        self.log_file = log_file
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        environment = dict(os.environ)
        paths = [*self.python_path, *environment.get("PYTHONPATH", "").split(os.pathsep)]
        environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        output = self._open_log()
        for index in range(self.count):
            command = [sys.executable, "-m", "dicomflow.queue", self.url]
            command += ["--name", f"node-{os.getpid()}-{index}", "--log-level", self.log_level]
            if self.log_file is not None:  # each its own rotated file; stray output below
                own = self.log_file.with_name(f"{self.log_file.stem}-{index}.log")
                command += ["--log-file", str(own)]
            process = subprocess.Popen(
                command,
                env=environment,
                preexec_fn=_die_with_parent,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
            )
            self.processes.append(process)
        if output is not None:
            output.close()
        logger.info("started %d local worker(s) for %s", self.count, _safe(self.url))

    def _open_log(self) -> BinaryIO | None:
        """Where the workers' stdout and stderr go: what does not pass through their
        logging (a crash of the worker itself). Their log records go to one rotated file
        each, ``workers-{n}.log``; their jobs' output to the job logs."""
        if self.log_file is None or not self.count:
            return None
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        return self.log_file.open("ab")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def _safe(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, _, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}://{rest}"
