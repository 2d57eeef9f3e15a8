"""Port of DicomNode's ``examples/plusOneNode.py``: add one to every CT voxel and send
the new series to a PACS.

The original sends to a fixed ``Address('1.2.3.4', 104, ...)``; this port reads the
peer from ``PLUSONE_ENDPOINT_HOST``/``_PORT``/``_AE`` and the image count the input
waits for from ``PLUSONE_MIN_IMAGES`` (the original: more than 150).
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

import logging
from os import environ
from pathlib import Path

from numpy import ndarray

from dicomflow.dicom.blueprints import ct_image_blueprint
from dicomflow.dicom.dicom_factory import DicomFactory
from dicomflow.dicom.dimse import Address
from dicomflow.dicom.sop_mapping import CTImageStorage_required_tags
from dicomflow.server.grinders import NumpyGrinder
from dicomflow.server.input import AbstractInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.output import DicomOutput, PipelineOutput
from dicomflow.server.processor import AbstractProcessor


INPUT_KW = "CT_IMAGE"
AE_TITLE = "PLUSONE"
ENDPOINT = Address(
    environ.get("PLUSONE_ENDPOINT_HOST", "1.2.3.4"),
    int(environ.get("PLUSONE_ENDPOINT_PORT", "104")),
    environ.get("PLUSONE_ENDPOINT_AE", "ENDPOINT_AE"),
)
MIN_IMAGES = int(environ.get("PLUSONE_MIN_IMAGES", "150"))


class CTInput(AbstractInput):
    required_tags = CTImageStorage_required_tags
    image_grinder = NumpyGrinder()

    def validate(self) -> bool:
        return self.images > MIN_IMAGES


class PlusOnePipeline(AbstractPipeline):
    ae_title = AE_TITLE
    port = 1337
    ip = "0.0.0.0"
    disable_pynetdicom_logger = True
    log_level = logging.INFO
    log_output = Path("log.log")

    input = {INPUT_KW: CTInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> PipelineOutput:
            volume: ndarray = input_container[INPUT_KW]
            volume += 1
            series = DicomFactory().build_series(
                volume, ct_image_blueprint, input_container.datasets[INPUT_KW]
            )
            return DicomOutput([(ENDPOINT, series)], AE_TITLE)
