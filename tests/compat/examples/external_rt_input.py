"""Port of DicomNode's ``examples/external_rt_input.py``: an input that waits for an
RT object and, until one arrives, sends what it holds to an external service that
makes one (``PIPELINE_RT_ADDRESS``/``_PORT``/``_AE_TITLE``).

The original has no pipeline; ``RTPipeline`` below is the smallest one using the
input. Differences from the original: it builds the input with
``AbstractInput.Options()``, a name the library no longer has (its inputs take a
config object now) and sends only when ``has_send_datasets`` is already true, so
it never sends; this port sends once, the first time the input is not ready.
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

from os import environ

from pydicom import Dataset
from pydicom.uid import CTImageStorage, RTImageStorage

from dicomflow.dicom.dimse import Address, send_images
from dicomflow.lib.exceptions import CouldNotCompleteDIMSEMessage
from dicomflow.lib.validators import OptionsValidator
from dicomflow.server.grinders import RTStructGrinder
from dicomflow.server.input import AbstractInput
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.output import NoOutput
from dicomflow.server.processor import AbstractProcessor


ENV_ADDRESS, ENV_PORT, ENV_AE = "PIPELINE_RT_ADDRESS", "PIPELINE_RT_PORT", "PIPELINE_RT_AE_TITLE"
SERVICE_ADDRESS = environ.get(ENV_ADDRESS)
SERVICE_PORT = environ.get(ENV_PORT)
SERVICE_AE_TITLE = environ.get(ENV_AE)


class RTConsumer(AbstractInput):
    image_grinder = RTStructGrinder()
    required_values = {0x00080016: OptionsValidator([RTImageStorage, CTImageStorage])}

    def __init__(self, options: AbstractInput.Options = AbstractInput.Options()) -> None:  # noqa: B008
        super().__init__(options)
        self.has_rt_struct = False
        self.has_send_datasets = False

    def add_image(self, dicom: Dataset) -> int:
        added = super().add_image(dicom)
        if added != 0 and dicom.SOPClassUID == RTImageStorage:
            self.has_rt_struct = True
        return added

    def validate(self) -> bool:
        ready = self.images > 1 and self.has_rt_struct
        if not ready and self.images > 0 and not self.has_send_datasets:
            self.has_send_datasets = True
            self.ask_service()
        return ready

    def ask_service(self) -> None:
        scu = self.options.ae_title
        if None in (SERVICE_ADDRESS, SERVICE_PORT, SERVICE_AE_TITLE, scu):
            self.logger.error(
                "RTConsumer is not configured: %s=%s %s=%s %s=%s, AE title %s",
                *(ENV_ADDRESS, SERVICE_ADDRESS, ENV_PORT, SERVICE_PORT, ENV_AE, SERVICE_AE_TITLE),
                scu,
            )
            return
        address = Address(str(SERVICE_ADDRESS), int(str(SERVICE_PORT)), str(SERVICE_AE_TITLE))
        try:
            send_images(scu, address, self)
        except CouldNotCompleteDIMSEMessage:
            self.logger.error("Could not send images to %s as %s", address, scu)


class RTPipeline(AbstractPipeline):
    ae_title = "RTCONSUMER"
    input = {"rt": RTConsumer}

    class Processor(AbstractProcessor):
        def process(self, input_container: dict[str, object]) -> NoOutput:
            self.logger.info("RT object received")
            return NoOutput()
