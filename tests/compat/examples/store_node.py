"""Port of DicomNode's ``examples/storeNode.py``: keep every received instance on disk.

The archive folder comes from ``STORENODE_ARCHIVE_PATH`` as in the original.
Difference from the original: the original handed ``save_dicom`` itself to
``FileOutput``, which then writes every instance onto the archive *folder*
path (``IsADirectoryError``); this port names one file per instance.
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

import logging
from os import environ
from pathlib import Path
from typing import Any

from pydicom import Dataset

from dicomflow.lib.io import save_dicom
from dicomflow.server.grinders import ListGrinder
from dicomflow.server.input import AbstractInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.output import FileOutput, PipelineOutput
from dicomflow.server.processor import AbstractProcessor


ARCHIVE_PATH = Path(environ.get("STORENODE_ARCHIVE_PATH", "/raid/dicom/storenode/"))
INPUT_ARG = "dataset"


class AnyInstance(AbstractInput):
    required_tags = [
        0x00080016,  # SOPClassUID
        0x00100020,  # PatientID
        0x0020000D,  # StudyInstanceUID
        0x0020000E,  # SeriesInstanceUID
    ]
    image_grinder = ListGrinder()

    def validate(self) -> bool:
        return True


def save_instance(folder: Path, dataset: Dataset) -> None:
    save_dicom(folder / f"instance_{int(dataset.InstanceNumber):04d}.dcm", dataset)


class StoreNode(AbstractPipeline):
    log_output = "log.log"
    ae_title = "STORENODE"
    port = 1337
    ip = "0.0.0.0"
    disable_pynetdicom_logger = True
    log_level = logging.INFO

    input: dict[str, Any] = {INPUT_ARG: AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> PipelineOutput:
            datasets = input_container[INPUT_ARG]
            return FileOutput([(ARCHIVE_PATH, datasets)], saving_function=save_instance)

    def post_init(self) -> None:
        ARCHIVE_PATH.mkdir(exist_ok=True)


if __name__ == "__main__":
    StoreNode().open()
