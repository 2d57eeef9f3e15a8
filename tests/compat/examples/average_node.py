"""Port of DicomNode's ``examples/averageNode.py`` (which its authors mark "borked"):
average several series of equal length voxel by voxel.

The original computes the mean and drops it (``NoOutput``); this port also saves it
as ``average.npy`` in ``AVERAGE_NODE_OUTPUT_PATH`` so a run can be checked.
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

import logging
import os
from pathlib import Path

import numpy

from dicomflow.dicom.blueprints import (
    SOP_common_blueprint,
    general_series_blueprint,
    image_plane_blueprint,
)
from dicomflow.dicom.dicom_factory import Blueprint, DicomFactory, StaticElement
from dicomflow.server.grinders import NumpyGrinder
from dicomflow.server.input import DynamicInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.output import NoOutput
from dicomflow.server.processor import AbstractProcessor


OUTPUT_PATH = Path(os.environ.get("AVERAGE_NODE_OUTPUT_PATH", "/tmp/"))
INPUT_KW = "series"
factory = DicomFactory()
blueprint: Blueprint = SOP_common_blueprint + image_plane_blueprint + general_series_blueprint
blueprint.add_virtual_element(StaticElement(0x0008103E, "LO", "Averaged Image"))


class SeriesInputs(DynamicInput):
    image_grinder = NumpyGrinder()
    required_tags = blueprint.get_required_tags()

    def validate(self) -> bool:
        if len(self.data) == 0:
            return False
        return len({len(leaf) for leaf in self.data.values()}) == 1


class AveragingPipeline(AbstractPipeline):
    header_blueprint = blueprint
    dicom_factory = factory
    ae_title = "AVERAGENODE"
    ip = "0.0.0.0"
    port = 1337
    log_level = logging.DEBUG
    disable_pynetdicom_logger = True
    input = {INPUT_KW: SeriesInputs}

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> NoOutput:
            volumes = numpy.array(list(input_container[INPUT_KW].values()))
            numpy.save(OUTPUT_PATH / "average.npy", volumes.mean(axis=0))
            return NoOutput()


if __name__ == "__main__":
    AveragingPipeline().open()
