"""Runs rounds in isolated worker processes, with a timeout, from a warm forkserver.

The forkserver is started once, when the node starts, with dicomflow, pydicom,
numpy and the pipeline's own module already imported. Each round then gets a
fresh process forked from that single-threaded server: no deadlock risk from
forking a multi-threaded node, and none of spawn's start-up cost.
"""

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dicomflow.net.address import Address
from dicomflow.node.reference import PipelineRef
from dicomflow.node.round import Round
from dicomflow.node.worker import ERROR_FILE, WorkerTask, run_task

logger = logging.getLogger(__name__)
process_logger = logging.getLogger("dicomflow.process")

MAIN_PATH_VARIABLE = "DICOMFLOW_MAIN_PATH"  # read by dicomflow.node.preload
PRELOAD = ["dicomflow.node.worker", "pydicom", "numpy"]
MAX_LOG_LINE = 16_384


@dataclass
class Outcome:
    """How one round's processing ended."""

    ok: bool
    error: str = ""
    started: float = 0.0
    duration_s: float = 0.0


class Runner:
    """A pool of ``workers`` concurrent isolated rounds."""

    def __init__(
        self,
        pipeline: PipelineRef,
        *,
        endpoints: list[Address],
        ae_title: str,
        workers: int,
        timeout_s: float,
        log_level: str,
        on_done: Callable[[Round, Outcome], None],
        on_started: Callable[[Round], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.endpoints = tuple(endpoints)
        self.ae_title = ae_title
        self.timeout_s = timeout_s
        self.log_level = log_level
        self._on_done = on_done
        self._on_started = on_started
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="dicomflow-runner")
        self._context = multiprocessing.get_context("forkserver")
        _start_forkserver(pipeline)

    def submit(self, job: Round) -> None:
        self._executor.submit(self._run_and_report, job)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _run_and_report(self, job: Round) -> None:
        try:
            outcome = self.run(job)
        except Exception as exc:
            logger.exception("round %s: the runner failed", job.round_id)
            outcome = Outcome(False, f"The runner failed: {exc}")
        self._on_done(job, outcome)

    def run(self, job: Round) -> Outcome:
        """Run ``job`` in a child process and wait for it, at most ``timeout_s``."""
        _clear(job)
        task = WorkerTask(
            pipeline=self.pipeline,
            round_id=job.round_id,
            patient_key=job.patient_key,
            inputs={k: [(u, str(p)) for u, p in v] for k, v in job.input_paths().items()},
            directory=str(job.directory),
            endpoints=self.endpoints,
            ae_title=self.ae_title,
            log_level=self.log_level,
        )
        process = self._context.Process(target=run_task, args=(task,), name=f"round-{job.round_id}")
        started = time.time()
        process.start()
        if self._on_started is not None:
            self._on_started(job)
        process.join(self.timeout_s)
        timed_out = process.is_alive()
        if timed_out:
            _kill_group(process.pid)
            process.join()
        duration = time.time() - started
        relay_log(job)
        error = _diagnose(job, process.exitcode, timed_out, self.timeout_s)
        return Outcome(not error, error, started, duration)


def _start_forkserver(pipeline: PipelineRef) -> None:
    preload = ["dicomflow.node.preload", *PRELOAD]
    if pipeline.module not in ("__main__", "__mp_main__"):
        preload.append(pipeline.module)
    main_path = _main_path()
    if main_path is not None:
        os.environ[MAIN_PATH_VARIABLE] = main_path
    multiprocessing.forkserver.set_forkserver_preload(preload)
    multiprocessing.forkserver.ensure_running()


def _main_path() -> str | None:
    """The main script's path, as multiprocessing will give it to each child."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main.__spec__, "name", None) is not None:
        return None
    path = getattr(main, "__file__", None)
    return os.path.normpath(path) if path else None


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _clear(job: Round) -> None:
    for leftover in (job.directory / ERROR_FILE, job.log_file):
        leftover.unlink(missing_ok=True)
    for folder in (job.output_dir, job.work_dir):
        shutil.rmtree(folder, ignore_errors=True)


def _diagnose(job: Round, exitcode: int | None, timed_out: bool, timeout_s: float) -> str:
    if timed_out:
        return f"process() timed out after {timeout_s:g} s and was killed."
    traceback_file = job.directory / ERROR_FILE
    if exitcode == 0:
        if (job.output_dir / "outputs.json").is_file():
            return ""
        return "The worker exited with code 0 before process() returned."
    if traceback_file.is_file():
        return f"process() raised an exception:\n{traceback_file.read_text()}"
    if exitcode is not None and exitcode < 0:
        return f"The worker was killed by {signal.Signals(-exitcode).name}."
    return f"The worker exited with code {exitcode} before process() returned."


def relay_log(job: Round) -> None:
    """Copy the child's captured output, whatever its size, into the node's log."""
    path: Path = job.log_file
    if not path.is_file():
        return
    with path.open("r", errors="replace") as stream:
        for line in stream:
            text = line.rstrip("\n")
            for start in range(0, max(len(text), 1), MAX_LOG_LINE):
                process_logger.info(
                    "round %s | %s", job.round_id[:12], text[start : start + MAX_LOG_LINE]
                )
