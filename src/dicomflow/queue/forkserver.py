"""The fork server: a warm, single-threaded process that forks one child per job.

Started by :class:`dicomflow.queue.launcher.Launcher` as ``python -c`` with one
end of a socket pair. It imports dicomflow (and the worker's ``preload``
modules), then for each :class:`~dicomflow.queue.child.Task` it receives it
forks a child, answers ``("started", pid)``, reads the child's output into
its log file (:mod:`dicomflow.queue.capture`) until the child exits, kills
whatever the job left running (:mod:`dicomflow.queue.descendants`: the fork
server is a child subreaper, so this includes processes that left the job's
process group) and answers ``("exited", wait status)``.

It dies with its worker (PR_SET_PDEATHSIG, SIGTERM), killing the running
job's process group and its other descendants first. It runs in its own session, so that Ctrl+C in a
terminal reaches the worker alone, which then lets the current job finish.

Messages are pickles with a 4-byte length prefix. The module imports little,
because everything a fork server has imported makes each fork dearer.
"""

import importlib
import os
import pickle
import select
import signal
import socket
import struct
import sys
from types import FrameType
from typing import Any, NamedTuple

from dicomflow.queue import descendants
from dicomflow.queue.capture import Capture
from dicomflow.queue.child import Task, die_with_parent, load_prctl, prepare_output, run_task
from dicomflow.queue.function import load_module_from_file

HEADER = struct.Struct("!I")
READ_BYTES = 256 * 1024
EXIT_CHECK_MS = 20  # without a pidfd: how often to check whether the job has exited


class Setup(NamedTuple):
    """The first message to a new fork server."""

    parent_pid: int
    sys_path: list[str]
    preload: tuple[str, ...]
    log_level: str


def send_message(channel: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    channel.sendall(HEADER.pack(len(data)) + data)


def receive_message(channel: socket.socket) -> Any:
    """The next message; EOFError when the other end has closed."""
    (size,) = HEADER.unpack(_receive_exactly(channel, HEADER.size))
    return pickle.loads(_receive_exactly(channel, size))


def _receive_exactly(channel: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = channel.recv(size)
        if not chunk:
            raise EOFError("the fork server connection is closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Running:
    """The current child, whose process group is killed if the worker dies."""

    def __init__(self) -> None:
        self.pid: int | None = None

    def on_parent_death(self, signum: int, frame: FrameType | None) -> None:
        if self.pid:
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.pid, signal.SIGKILL)
                    break
                except (ProcessLookupError, PermissionError):
                    continue
        descendants.kill_now()
        os._exit(1)


def serve() -> None:
    """The fork server's main loop; ``sys.argv[1]`` is its socket's descriptor."""
    channel = socket.socket(fileno=int(sys.argv[1]))
    running = _Running()
    signal.signal(signal.SIGTERM, running.on_parent_death)
    die_with_parent(signal.SIGTERM)
    setup: Setup = receive_message(channel)
    if os.getppid() != setup.parent_pid:
        os._exit(1)  # the worker died before PR_SET_PDEATHSIG was set
    _prepare(setup)
    prctl = load_prctl()
    if not descendants.become_subreaper(prctl):
        print("dicomflow fork server: not a child subreaper", file=sys.stderr)
    send_message(channel, ("ready", os.getpid()))
    while True:
        try:
            task: Task = receive_message(channel)
        except EOFError:
            return
        capture = Capture(task.log_file, task.output_limit_bytes)
        output, child_output = os.pipe()
        running.pid = pid = os.fork()
        if pid == 0:
            running.pid = None
            channel.close()
            os.close(output)
            run_task(task, prctl, child_output)
        os.close(child_output)
        send_message(channel, ("started", pid))
        status = _supervise(pid, output, capture)
        running.pid = None
        send_message(channel, ("exited", status))


def _supervise(pid: int, output: int, capture: Capture) -> int:
    """Capture the job's output until its process exits, kill what it left running,
    capture the rest; its wait status."""
    process = _pidfd(pid)
    poller = select.poll()
    poller.register(output, select.POLLIN)
    if process is not None:
        poller.register(process, select.POLLIN)
    timeout_ms = None if process is not None else EXIT_CHECK_MS
    try:
        while True:
            events = poller.poll(timeout_ms)
            for descriptor, _ in events:
                if descriptor == output and not _read(output, capture):
                    poller.unregister(output)  # the job closed its output; it still runs
            ended, status = os.waitpid(pid, os.WNOHANG)
            if ended:
                descendants.kill_all()
                _drain(output, capture)
                return status
    finally:
        if process is not None:
            os.close(process)
        os.close(output)
        capture.close()


def _pidfd(pid: int) -> int | None:
    """A descriptor that polls readable when ``pid`` exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _read(output: int, capture: Capture) -> bool:
    """Capture what the job wrote; False at the end of its output."""
    data = os.read(output, READ_BYTES)
    capture.write(data)
    return bool(data)


def _drain(output: int, capture: Capture) -> None:
    """Read the output to its end (every process that could write to it is gone)."""
    os.set_blocking(output, False)
    while True:
        try:
            data = os.read(output, READ_BYTES)
        except BlockingIOError:
            return
        if not data:
            return
        capture.write(data)


def _prepare(setup: Setup) -> None:
    sys.path[:] = setup.sys_path
    prepare_output(setup.log_level)
    for name in setup.preload:
        try:
            _preload(name)
        except Exception as exc:  # a bad preload must not stop the worker
            print(f"dicomflow fork server: cannot preload {name}: {exc!r}", file=sys.stderr)


def _preload(entry: str) -> None:
    """Import ``module``, or load ``module@/path/file.py`` (a file that is not on sys.path,
    such as a pipeline run as a script) as ``module``."""
    name, _, path = entry.partition("@")
    if not path:
        importlib.import_module(name)
        return
    sys.path.append(os.path.dirname(path))
    load_module_from_file(path, name)
