"""Pipelines of the dashboard tests (importable by the processing workers)."""

import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from dicomflow.dicom.grinders import list_grinder
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor

FIRST_FAILURE = "first-attempt-failed"
UNDECODABLE_UID = "1.2.826.0.1.3680043.8.498.77"


class AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]
    image_grinder = staticmethod(list_grinder)


class CTInput(AbstractInput):
    required_tags = ["SOPInstanceUID", "PixelData"]
    required_values = {"Modality": "CT"}


class MRInput(AbstractInput):
    required_tags = ["SOPInstanceUID"]
    required_values = {"Modality": "MR"}


def records_directory(processor: AbstractProcessor) -> Path:
    """``records/`` beside the node's data directory (made by the ``make_node`` fixture): a
    round may write nothing in the data directory but its own folders."""
    return processor.working_directory.parents[3] / "records"


class NapPipeline(AbstractPipeline):
    """Takes 2 s, returns nothing."""

    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            time.sleep(2)
            return []


class FlakyPipeline(AbstractPipeline):
    """Fails its first round ever (of this test), then succeeds."""

    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            marker = records_directory(self) / FIRST_FAILURE
            if not marker.exists():
                marker.touch()
                raise ValueError("the first attempt fails <on purpose>")
            return []


class RaisingPipeline(FlakyPipeline):
    """Always fails."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            print("<b>hostile log line</b>")
            raise ValueError("segmentation model exploded")


class CTAndMRPipeline(AbstractPipeline):
    """Waits for a CT and an MR of the same patient."""

    input = {"ct": CTInput, "mr": MRInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return []


class ForwardingPipeline(AbstractPipeline):
    """Returns its instances: they go to the endpoints."""

    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return list(input_container["any"])


class BrowserPipeline(AbstractPipeline):
    """Takes 2 s; the first round of a patient whose PatientID starts with ``FLAKY`` then
    fails (the next one succeeds)."""

    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            time.sleep(2)
            [first, *_] = input_container["any"]
            marker = records_directory(self) / FIRST_FAILURE
            if str(first.PatientID).startswith("FLAKY") and not marker.exists():
                marker.touch()
                raise ValueError("the first attempt fails on purpose")
            return []


class LeakyPipeline(FlakyPipeline):
    """Prints its patient's name, ID and birth date, then fails naming the ID."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            [first, *_] = input_container["any"]
            print(f"patient {first.PatientName} ({first.PatientID}), born {first.PatientBirthDate}")
            print(f"family name only: {str(first.PatientName).split('^')[0]}")
            raise ValueError(f"no model for patient {first.PatientID}")


class TalkativePipeline(FlakyPipeline):
    """Prints its patient's name and succeeds."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            [first, *_] = input_container["any"]
            print(f"processing {first.PatientName}")
            return []


class UndecodablePipeline(FlakyPipeline):
    """Returns a JPEG 2000 instance of its patient whose pixel data cannot be decoded."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            [first, *_] = input_container["any"]
            result = pydicom.dcmread(str(get_testdata_file("JPEG2000.dcm")))
            result.PatientID = first.PatientID
            result.PatientName = first.PatientName
            result.SOPInstanceUID = UNDECODABLE_UID
            result.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
            return [result]
