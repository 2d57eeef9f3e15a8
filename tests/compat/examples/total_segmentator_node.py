"""Port of DicomNode's ``examples/total_segmentator_node.py``: a CT input ground to a
NIfTI image for a segmentation model.

The original stops at the input; ``SegmentationPipeline`` below is the smallest
queued pipeline around it. It logs the image shape instead of running a model.
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

from pydicom.uid import CTImageStorage

from dicomflow.server.grinders import NiftiGrinder
from dicomflow.server.input import AbstractInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractQueuedPipeline
from dicomflow.server.output import NoOutput
from dicomflow.server.processor import AbstractProcessor


INPUT_KW = "CT"


class CTInput(AbstractInput):
    required_values = {0x00080016: CTImageStorage}
    image_grinder = NiftiGrinder()

    def validate(self) -> bool:
        valid = True
        for image in self:
            valid &= image.InstanceNumber < self.images
        return valid


class SegmentationPipeline(AbstractQueuedPipeline):
    ae_title = "TOTALSEG"
    input = {INPUT_KW: CTInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> NoOutput:
            image = input_container[INPUT_KW]
            self.logger.info("NIfTI image of shape %s ready for segmentation", image.shape)
            return NoOutput()
