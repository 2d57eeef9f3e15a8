"""The processing worker: what runs inside the isolated child process.

The child gets its own process group (so a timeout kills everything it
started), dies with its parent, sends its stdout, stderr and logging into the
round's ``process.log`` (a file, so output of any size never blocks it), works
in the round's own working directory, reads its inputs from the round's
instance files and writes its results to the round's ``output/`` folder.
"""

import contextlib
import ctypes
import logging
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomflow.net.address import Address
from dicomflow.node.output import normalise, write_outputs
from dicomflow.node.reference import PipelineRef

logger = logging.getLogger(__name__)

ERROR_FILE = "error.txt"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerTask:
    """Everything the child needs, picklable."""

    pipeline: PipelineRef
    round_id: str
    patient_key: str
    inputs: dict[str, list[tuple[str, str]]]
    directory: str
    endpoints: tuple[Address, ...] = ()
    ae_title: str = "DICOMFLOW"
    log_level: str = "INFO"


class InputContainer(dict[str, Any]):
    """What ``process()`` receives: input name -> ``get_data()`` result.

    ``paths`` gives the instance files of each input, ``round_id`` and
    ``patient_key`` identify the round.
    """

    def __init__(self, data: dict[str, Any], paths: dict[str, list[Path]], task: WorkerTask):
        super().__init__(data)
        self.paths = paths
        self.round_id = task.round_id
        self.patient_key = task.patient_key


def run_task(task: WorkerTask) -> None:
    """Child entry point: set up isolation, run the processor, exit 0 or 1."""
    directory = Path(task.directory)
    _isolate(directory / "process.log", task.log_level)
    work = directory / "work"
    work.mkdir(exist_ok=True)
    os.chdir(work)
    try:
        _process(task, directory)
    except BaseException:
        text = traceback.format_exc()
        logger.error("round %s: processing failed\n%s", task.round_id, text)
        (directory / ERROR_FILE).write_text(text)
        _flush()
        os._exit(1)
    _flush()
    os._exit(0)


def _process(task: WorkerTask, directory: Path) -> None:
    pipeline_class = task.pipeline.resolve()
    container = _build_container(pipeline_class, task)
    processor = pipeline_class.Processor()
    processor.bind(pipeline_class, task.round_id, task.patient_key, Path.cwd())
    logger.info("round %s: process() started", task.round_id)
    result = processor.process(container)
    outputs = normalise(result, task.endpoints, task.ae_title)
    manifest = write_outputs(outputs, directory / "output")
    count = sum(len(entry["files"]) for entry in manifest["outputs"])
    logger.info("round %s: process() returned %d dataset(s)", task.round_id, count)


def _build_container(pipeline_class: Any, task: WorkerTask) -> InputContainer:
    data: dict[str, Any] = {}
    paths: dict[str, list[Path]] = {}
    for name, members in task.inputs.items():
        input_object = pipeline_class.input[name]()
        input_object.load((uid, Path(path)) for uid, path in members)
        data[name] = input_object.get_data()
        paths[name] = [Path(path) for _, path in members]
    return InputContainer(data, paths, task)


def _isolate(log_file: Path, level: str) -> None:
    os.setsid()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    descriptor = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
