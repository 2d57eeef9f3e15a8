"""Port of DicomNode's ``examples/anomyzationNode.py``: replace patient identity and
every UID, write the result as files.

The original writes to ``/tmp/anno_node``; this port reads the folder from
``ANON_NODE_OUTPUT_PATH``. The original imports ``InputContainer`` from
``server.pipeline_tree``, a module the library no longer has; this port uses
``server.input_container``, where the class lives now.
"""

# ruff: noqa: I001  (the dicomflow faces are resolved only once they exist)

from os import environ
from pathlib import Path

from dicomflow.data_structures.image_tree import DicomTree, IdentityMapping
from dicomflow.dicom.anonymization import anonymize_dicom_tree
from dicomflow.dicom.dimse import Address
from dicomflow.lib.exceptions import InvalidTreeNode
from dicomflow.server.grinders import DicomTreeGrinder
from dicomflow.server.input import AbstractInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.output import FileOutput
from dicomflow.server.processor import AbstractProcessor


OUTPUT_DIRECTORY = Path(environ.get("ANON_NODE_OUTPUT_PATH", "/tmp/anno_node"))
OUTPUT_DIRECTORY.mkdir(exist_ok=True)
INPUT_ARG = "dataset"
PREFIX_SIZE = 4
BASE_NAME = "Anon"


class TreeInput(AbstractInput):
    required_tags = [
        0x00100020,  # PatientID
        0x00100010,  # PatientName
        0x00080016,  # SOPClassUID
        0x0020000D,  # StudyInstanceUID
        0x0020000E,  # SeriesInstanceUID
    ]
    image_grinder = DicomTreeGrinder()

    def validate(self) -> bool:
        return True


class AnonymizationPipeline(AbstractPipeline):
    """New patient identity, study, series and instance UIDs for everything received."""

    port = 9999
    ae_title = "ANONYMIZATION"
    log_path: str | Path | None = Path("Anon.log")
    input = {INPUT_ARG: TreeInput}
    endpoints = [Address("localhost", 4321, "STORESCP")]

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> FileOutput:
            tree = input_container[INPUT_ARG]
            if not isinstance(tree, DicomTree):
                self.logger.critical("DicomTreeGrinder did not return a DicomTree")
                raise InvalidTreeNode
            mapping = IdentityMapping(prefix_size=PREFIX_SIZE)
            mapping.fill_from_DicomTree(tree)
            tree.map(anonymize_dicom_tree(mapping, BASE_NAME))
            return FileOutput([(OUTPUT_DIRECTORY, tree)])


if __name__ == "__main__":
    AnonymizationPipeline()
