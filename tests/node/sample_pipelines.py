"""Pipelines used by the node tests (importable by the processing workers)."""

import ctypes
import os
import sys
import time
from pathlib import Path
from typing import Any

from pydicom import Dataset

from dicomflow.dicom.grinders import list_grinder
from dicomflow.node import (
    AbstractInput,
    AbstractPipeline,
    AbstractProcessor,
    ArchiveOutput,
    FileOutput,
)

MARK = "processed by dicomflow"


class AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]
    image_grinder = staticmethod(list_grinder)


class CTInput(AbstractInput):
    required_tags = ["SOPInstanceUID", "PixelData"]
    required_values = {"Modality": "CT"}
    image_grinder = staticmethod(list_grinder)


def data_directory(processor: AbstractProcessor) -> Path:
    """The node's data directory, from the round's working directory."""
    return processor.working_directory.parents[2]


def records_directory(processor: AbstractProcessor) -> Path:
    """Where test pipelines leave records for their tests: ``records/`` beside the data
    directory, made by the test before the node starts (a round may write nothing in
    the data directory but its own folders, nor make new entries beside it)."""
    return data_directory(processor).parent / "records"


def mark(datasets: list[Dataset]) -> list[Dataset]:
    for dataset in datasets:
        dataset.ImageComments = MARK
    return datasets


class CopyPipeline(AbstractPipeline):
    """Returns every instance with ImageComments set; sent to the endpoints."""

    ae_title = "DICOMFLOW"
    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return mark(input_container["any"])


class CTCopyPipeline(CopyPipeline):
    input = {"ct": CTInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return mark(input_container["ct"])


class TwoInputPipeline(CopyPipeline):
    """Needs a CT and an MR of the same patient before it runs."""

    class MRInput(AbstractInput):
        required_tags = ["SOPInstanceUID"]
        required_values = {"Modality": "MR"}

    input = {"ct": CTInput, "mr": MRInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return mark(list(input_container["ct"]) + list(input_container["mr"]))


class LegacyPipeline(CopyPipeline):
    """``process()`` on the pipeline itself (the style before nested processors)."""

    Processor = AbstractPipeline.Processor

    def process(self, input_container: Any) -> Any:
        return mark(input_container["any"])


class FileOutputPipeline(CopyPipeline):
    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            target = data_directory(self) / "files-out"
            return FileOutput([(target, mark(input_container["any"]))])


class RaisingPipeline(CopyPipeline):
    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            raise ValueError("segmentation model exploded")


class ExitingPipeline(CopyPipeline):
    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            os._exit(3)


class SegfaultPipeline(CopyPipeline):
    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            ctypes.string_at(0)


class SleepingPipeline(CopyPipeline):
    processing_timeout_s = 1.0

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            time.sleep(60)


class ChattyPipeline(CopyPipeline):
    """Prints 5 MB to stdout and stderr, then succeeds."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            line = "x" * 1023
            for _ in range(2560):
                print(line)
                print(line, file=sys.stderr)
            return mark(input_container["any"])


class WorkdirPipeline(CopyPipeline):
    """Records its working directory and pid in ``workdir.txt`` of the records directory."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            Path("scratch.bin").write_bytes(b"intermediate")
            (records_directory(self) / "workdir.txt").write_text(f"{os.getcwd()}\n{os.getpid()}")
            return []


class SlowPipeline(CopyPipeline):
    """Takes 3 s, then copies (to kill the node while it processes)."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            time.sleep(3)
            return mark(input_container["any"])


class PidSleepingPipeline(SleepingPipeline):
    """Starts a ``sleep`` child, writes its own and the child's pid to ``sleeper.pids`` of
    the records directory, then sleeps past its 1 s timeout."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            import subprocess

            child = subprocess.Popen(["sleep", "60"])
            (records_directory(self) / "sleeper.pids").write_text(f"{os.getpid()} {child.pid}")
            time.sleep(60)


RELEASE = "RELEASE"


class ReleaseInput(AnyInstance):
    """Validates only once it holds an instance whose ImageComments is ``RELEASE``."""

    def validate(self) -> bool:
        return any(ds.get("ImageComments") == RELEASE for ds in self.data.values())


class HoldingPipeline(CopyPipeline):
    """Keeps a patient's instances in the spool until a ``RELEASE`` instance arrives; records
    each round as ``rounds-seen/{round_id}.json`` (patient key, instance UIDs) in the
    records directory."""

    input = {"any": ReleaseInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            import json

            folder = records_directory(self) / "rounds-seen"
            folder.mkdir(exist_ok=True)
            uids = sorted(str(ds.SOPInstanceUID) for ds in input_container["any"])
            record = {"patient_key": self.patient_key, "uids": uids}
            (folder / f"{self.round_id}.json").write_text(json.dumps(record))
            return []


class ArchivePipeline(CopyPipeline):
    """Archives the marked instances into ``archive/`` of the data directory."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            datastore = str(data_directory(self) / "archive")
            return ArchiveOutput(datastore, mark(input_container["any"]))


class VandalPipeline(CopyPipeline):
    """Fails for patient ``FIRST``; for any other, tries to damage the node's files (the
    journal, the spool, the queue, the first patient's failed round, its own inputs),
    printing ``refused: <what>`` or ``DAMAGED: <what>`` for each, then copies."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            import shutil
            import tempfile

            [first, *_] = input_container["any"]
            if first.PatientID == "FIRST":
                raise ValueError("the first patient fails on purpose")
            data = data_directory(self)
            attempts = {
                "journal": (data / "journal" / "segment.journal").unlink,
                "spool": lambda: (data / "spool" / "incoming" / "planted.dcm").write_bytes(b"x"),
                "queue": lambda: (data / "queue.db").open("r+b").truncate(0),
                "failed round": lambda: shutil.rmtree(next((data / "failed").iterdir())),
                "own inputs": lambda: input_container.paths["any"][0].unlink(),
                "data directory": lambda: (data / "planted").mkdir(),
            }
            for what, attempt in attempts.items():
                try:
                    attempt()
                    print(f"DAMAGED: {what}")
                except PermissionError:
                    print(f"refused: {what}")
            with tempfile.NamedTemporaryFile() as scratch:
                scratch.write(b"temporary files still work")
            Path("scratch.bin").write_bytes(b"so does the working directory")
            return mark(input_container["any"])


class HungryPipeline(CopyPipeline):
    """Holds 512 MiB (touched) before it copies."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            block = bytearray(512 * 1024 * 1024)
            block[:: 1 << 12] = bytes(len(block) >> 12)
            return mark(input_container["any"])
