"""The worker's handle on its fork server (:mod:`dicomflow.queue.forkserver`).

Each worker starts one fork server on first use: a fresh, single-threaded
interpreter (so forking it is safe however many threads the worker runs),
preloaded with dicomflow and the ``preload`` modules, that forks one process
per job.

Why not ``multiprocessing``'s forkserver, as the node's runner uses: on the
project's 2-core machine it costs 6-8 ms per child (its per-child preparation:
main-module fix-up, a pickled process object, the exit status relayed through
a SIGCHLD handler), about 150 children/s; this one needs 2-3 ms.
"""

import logging
import os
import select
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import NoReturn

from dicomflow.errors import QueueError
from dicomflow.queue.child import Task
from dicomflow.queue.forkserver import Setup, receive_message, send_message

logger = logging.getLogger(__name__)

BOOT = "from dicomflow.queue.forkserver import serve; serve()"
START_TIMEOUT_S = 60.0


class Launcher:
    """Starts job processes through the worker's fork server (started on first use)."""

    def __init__(self, preload: Sequence[str] = (), log_level: str = "INFO") -> None:
        self.preload = tuple(preload)
        self.log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None

    def launch(self, task: Task) -> int:
        """Fork a process for ``task``; its pid, which is also its process group id."""
        channel = self._started()
        try:
            send_message(channel, task)
            _, pid = receive_message(channel)
        except (OSError, EOFError) as exc:
            self._lost(exc)
        return int(pid)

    def wait(self, timeout_s: float) -> int | None:
        """The process's wait status once it has ended; None while it runs (``timeout_s``)."""
        channel = self._started()
        readable = select.poll()
        readable.register(channel, select.POLLIN)
        try:
            if not readable.poll(max(timeout_s, 0.0) * 1000):
                return None
            _, status = receive_message(channel)
        except (OSError, EOFError) as exc:
            self._lost(exc)
        return int(status)

    def close(self) -> None:
        """Stop the fork server (a running job process dies with it)."""
        channel, process = self._channel, self._process
        self._channel = self._process = None
        if channel is not None:
            channel.close()
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _started(self) -> socket.socket:
        if self._channel is None:
            self._channel = self._start()
        return self._channel

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._process = process = subprocess.Popen(
            [sys.executable, "-c", BOOT, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # no Ctrl+C from the terminal: the worker decides
        )
        theirs.close()
        self._channel = ours
        try:
            send_message(ours, Setup(os.getpid(), list(sys.path), self.preload, self.log_level))
            ours.settimeout(START_TIMEOUT_S)
            receive_message(ours)
            ours.settimeout(None)
        except (OSError, EOFError) as exc:
            self._lost(exc)
        logger.debug("fork server %s started", process.pid)
        return ours

    def _lost(self, exc: BaseException) -> NoReturn:
        pid = self._process.pid if self._process is not None else None
        self.close()
        raise QueueError(f"The job fork server (pid {pid}) stopped unexpectedly: {exc!r}.") from exc
