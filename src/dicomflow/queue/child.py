"""What runs inside a job's own process: isolation first, then the job's function.

The process leads its own session and process group (so a timeout or a
cancellation kills everything it started), dies with the fork server that
forked it, writes stdout, stderr and logging into a pipe that the fork server
reads into the attempt's log file (see :mod:`dicomflow.queue.capture`), works
in the attempt's own temporary directory, and has at most
``memory_limit_bytes`` of private writable memory (``RLIMIT_DATA``: heap and
anonymous mappings, not reserved address space nor mapped files; past it an
allocation fails, in Python with MemoryError). It writes its return value
(JSON) or the traceback to the attempt's outcome file, then exits 0 or 1; the
traceback of a :class:`~dicomflow.errors.PermanentJobError` is written as a
``PERMANENT`` outcome, which the worker does not retry.

The fork server imports this module before forking, and sets up once what all
children share (:func:`prepare_output`): every module imported here and every
page a child touches makes each fork dearer, so this module imports little.
"""

import contextlib
import ctypes
import io
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

from dicomflow.errors import PermanentJobError
from dicomflow.queue.function import resolve_function

logger = logging.getLogger(__name__)

Prctl = Callable[[int, int], int]

PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RESULT = "result"
ERROR = "error"
PERMANENT = "permanent"
"""An error that no retry can fix (see :class:`~dicomflow.errors.PermanentJobError`)."""


class Task(NamedTuple):
    """One attempt of a job, as the fork server receives it."""

    token: str
    """Written first into the outcome file, so that a stale file is never mistaken for this one."""
    function: str
    kwargs: dict[str, Any]
    work_dir: str
    log_file: str
    outcome_file: str
    job_id: str
    memory_limit_bytes: int = 0
    """0: no limit."""
    output_limit_bytes: int = 0
    """What of the output is kept in the log file (head and tail); 0: all of it."""


def prepare_output(level: str) -> None:
    """Line-buffer stdout and send the root logger to stderr (once, in the fork server)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


def load_prctl() -> Prctl | None:
    """The C library's ``prctl`` (None where there is none)."""
    try:
        prctl: Prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def die_with_parent(sig: signal.Signals, prctl: Prctl | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux)."""
    prctl = prctl or load_prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(sig))


def run_task(task: Task, prctl: Prctl | None, output: int) -> NoReturn:
    """Child entry point: isolate (stdout and stderr to the descriptor ``output``), call
    the function, record its outcome, exit."""
    _isolate(task, prctl, output)
    try:
        value = resolve_function(task.function)(**task.kwargs)
        _write_outcome(task, RESULT, _to_json(task, value))
    except BaseException as exc:
        import traceback

        text = traceback.format_exc()
        if isinstance(exc, MemoryError) and task.memory_limit_bytes:
            text = f"{memory_limit_exceeded(task.memory_limit_bytes)}\n{text}"
        logger.error("job %s: %s raised an exception\n%s", task.job_id, task.function, text)
        _write_outcome(task, PERMANENT if isinstance(exc, PermanentJobError) else ERROR, text)
        _exit(1)
    _exit(0)


def read_outcome(task: Task) -> tuple[str, str] | None:
    """``(RESULT, json)``, ``(ERROR, traceback)`` or ``(PERMANENT, traceback)`` as ``task``'s
    process left it, if it did."""
    try:
        with open(task.outcome_file, encoding="utf-8") as stream:
            token, kind, payload = stream.read().split("\n", 2)
    except (FileNotFoundError, ValueError):
        return None
    return (kind, payload) if token == task.token else None


def memory_limit_exceeded(limit_bytes: int) -> str:
    """The error of a job that ran out of its memory limit."""
    return (
        f"The job exceeded its memory limit of {limit_bytes} bytes"
        f" ({limit_bytes / 2**20:.0f} MiB; setting job_memory_limit_bytes)."
    )


def _isolate(task: Task, prctl: Prctl | None, output: int) -> None:
    os.setsid()
    die_with_parent(signal.SIGKILL, prctl)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    os.environ["DICOMFLOW_JOB_ID"] = task.job_id
    os.chdir(task.work_dir)
    if task.memory_limit_bytes:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = task.memory_limit_bytes
        limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _to_json(task: Task, value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        logger.warning(
            "job %s: the return value (%s) is not JSON-serialisable and is not kept: %s",
            task.job_id,
            type(value).__name__,
            exc,
        )
        return "null"


def _write_outcome(task: Task, kind: str, payload: str) -> None:
    data = f"{task.token}\n{kind}\n{payload}".encode()
    descriptor = os.open(task.outcome_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while data:
            data = data[os.write(descriptor, data) :]
    finally:
        os.close(descriptor)


def _exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
