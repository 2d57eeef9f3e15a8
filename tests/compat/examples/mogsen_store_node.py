"""Port of DicomNode's ``examples/mogsenStoreNode.py``: one round per series; each
instance saved as ``archive/PatientID/study/series/instance.dcm`` plus a TSV line
per instance (slice, frame, start, duration, acquisition time, file).

``STORENODE_ARCHIVE_PATH`` names the archive, as in the original.
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

import csv
import logging
from datetime import datetime
from os import environ
from pathlib import Path
from typing import Any

from pydicom import Dataset

from dicomflow.dicom import make_meta  # noqa: F401  (imported by the original too)
from dicomflow.lib.io import save_dicom
from dicomflow.server.grinders import ListGrinder  # noqa: F401  (as the original)
from dicomflow.server.input import AbstractInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.output import FileOutput
from dicomflow.server.processor import AbstractProcessor


ARCHIVE_PATH = Path(environ.get("STORENODE_ARCHIVE_PATH", "/raid/dicom/storenode/"))
INPUT_ARG = "dataset"
TSV_HEADER = ["Plane", "Frame", "Start", "Dur", "AcqTime", "File"]
STAMP = "%Y%m%d%H%M%S.%f"


class AnyInstance(AbstractInput):
    """No image_grinder: the default one hands ``process()`` the input's datasets."""

    required_tags = [0x00080016, 0x0020000D, 0x0020000E]

    def validate(self) -> bool:
        return True


def instance_path(archive: Path, dataset: Dataset) -> Path:
    series = archive / dataset.PatientID / dataset.StudyInstanceUID.name
    return series / dataset.SeriesInstanceUID.name / f"{dataset.SOPInstanceUID.name}.dcm"


def slice_and_frame(dataset: Dataset) -> tuple[int, int, float]:
    """(slice, frame, frame duration in s); PET by Image Index, CT by Instance Number."""
    if dataset.Modality == "PT":
        series_type, index = dataset[0x00541000].value, dataset[0x00541330].value
        duration = dataset[0x00181242].value * 0.001
        if "DYNAMIC" in series_type:
            frame, plane = divmod(index - 1, dataset[0x00540081].value)
            return plane + 1, frame + 1, duration
        return index, 1, duration
    if dataset.Modality == "CT":
        return int(dataset.get(0x00200013, 0).value), 0, 0
    return 0, 0, 0


def write_tsv_row(archive: Path, dataset: Dataset) -> None:
    plane, frame, duration = slice_and_frame(dataset)
    acquired = datetime.strptime(dataset[0x00080022].value + dataset[0x00080032].value, STAMP)
    series_time = datetime.strptime(dataset[0x00080021].value + dataset[0x00080031].value, STAMP)
    start = (acquired - series_time).total_seconds()
    tsv = archive / dataset.PatientID / dataset.StudyInstanceUID.name
    tsv = tsv / f"{dataset.SeriesInstanceUID.name}.tsv"
    new_file = not tsv.is_file()
    with tsv.open("a", encoding="utf8") as stream:
        writer = csv.writer(stream, delimiter="\t")
        if new_file:
            writer.writerow(TSV_HEADER)
        row = [plane, frame, start, duration, acquired.strftime("%H:%M:%S")]
        writer.writerow([*row, instance_path(archive, dataset)])


def store_dataset(archive: Path, dataset: Dataset) -> None:
    target = instance_path(archive, dataset)
    if not target.is_file():
        save_dicom(target, dataset)
        write_tsv_row(archive, dataset)


class StoreNode(AbstractPipeline):
    log_path = "/var/log/storenode.log"
    ae_title = "STORENODE"
    port = 1337
    ip = "0.0.0.0"
    disable_pynetdicom_logger = True
    log_level = logging.INFO
    patient_identifier_tag = 0x0020000E  # one round per series

    input: dict[str, Any] = {INPUT_ARG: AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> FileOutput:
            datasets: list[Dataset] = input_container[INPUT_ARG]
            self.logger.info("Started to store %d", len(datasets))
            return FileOutput([(ARCHIVE_PATH, datasets)], store_dataset)

    def post_init(self) -> None:
        ARCHIVE_PATH.mkdir(exist_ok=True)


if __name__ == "__main__":
    StoreNode().open()
