"""What runs inside a job's own process: isolation first, then the job's function.

The process leads its own session and process group (so a timeout or a
cancellation kills everything it started), dies with the fork server that
forked it, writes stdout, stderr and logging into the attempt's log file (a
file, so output of any size never blocks it; the streams and the logging
handler are set up once in the fork server by :func:`prepare_output`), and
works in its own temporary directory. It leaves the return value (JSON) or the traceback in files beside
the log, and exits 0 or 1.
"""

import contextlib
import ctypes
import io
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

Prctl = Callable[[int, int], int]

from dicomflow.queue.function import resolve_function

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Task:
    """One attempt of a job, as the fork server receives it (picklable)."""

    job_id: str
    function: str
    kwargs: dict[str, Any]
    work_dir: str
    log_file: str
    result_file: str
    error_file: str


def prepare_output(level: str) -> None:
    """Set up, once in the fork server, what every child's output goes through.

    stdout is line-buffered and the root logger writes to stderr; a child only
    has to point descriptors 1 and 2 at its log file (forking is cheaper when
    the child touches little memory).
    """
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


def run_task(task: Task, prctl: Prctl | None) -> NoReturn:
    """Child entry point: isolate, call the function, record its outcome, exit."""
    _isolate(task, prctl)
    try:
        value = resolve_function(task.function)(**task.kwargs)
        _write_result(task, value)
    except BaseException:
        text = traceback.format_exc()
        logger.error("job %s: %s raised an exception\n%s", task.job_id, task.function, text)
        Path(task.error_file).write_text(text)
        _flush()
        os._exit(1)
    _flush()
    os._exit(0)


def die_with_parent(sig: signal.Signals, prctl: Prctl | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits (Linux)."""
    prctl = prctl or load_prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, int(sig))


def _isolate(task: Task, prctl: Prctl | None) -> None:
    os.setsid()
    die_with_parent(signal.SIGKILL, prctl)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    _redirect_output(task.log_file)
    os.environ["DICOMFLOW_JOB_ID"] = task.job_id
    os.chdir(task.work_dir)


def _redirect_output(log_file: str) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    descriptor = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)


def _write_result(task: Task, value: Any) -> None:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError) as exc:
        logger.warning(
            "job %s: the return value (%s) is not JSON-serialisable and is not kept: %s",
            task.job_id,
            type(value).__name__,
            exc,
        )
        text = "null"
    descriptor = os.open(task.result_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(descriptor, text.encode())
    finally:
        os.close(descriptor)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
