"""Pipelines of the output tests, written as users of the pipeline library write them
(importable by the processing workers: they import dicomflow only).

Their processors find the test's folder beside the node's data directory.
"""

import json
from pathlib import Path
from typing import Any

from pydicom import Dataset

from dicomflow.dicom.dimse import Address
from dicomflow.lib.io import save_dicom
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor
from dicomflow.server.output import (
    DicomOutput,
    FileOutput,
    MultiOutput,
    NoOutput,
    PipelineOutput,
)


class AnyInput(AbstractInput):
    required_tags = [0x00080018]  # SOPInstanceUID

    def validate(self) -> bool:
        return True


def beside_data(processor: AbstractProcessor) -> Path:
    """The test's folder: the parent of the node's data directory."""
    return processor.working_directory.parents[3]


def peer(processor: AbstractProcessor) -> Address:
    ip, port, ae_title = json.loads((beside_data(processor) / "peer.json").read_text())
    return Address(ip, port, ae_title)


def numbered_save(path: Path, dataset: Dataset) -> None:
    """A user's saving function: its own file names."""
    save_dicom(path / f"slice-{dataset.InstanceNumber:03d}.dcm", dataset)


class RecordingOutput(PipelineOutput):
    """A user's output: ``send()`` records what it was given."""

    def send(self) -> bool:
        for destination, datasets in self:
            uids = sorted(str(ds.SOPInstanceUID) for ds in datasets)
            Path(destination).write_text(json.dumps(uids))
        return True


class RefusingOutput(PipelineOutput):
    def send(self) -> bool:
        return False


class RaisingOutput(PipelineOutput):
    def send(self) -> bool:
        raise ConnectionError("the RIS is down")


class OutputPipeline(AbstractPipeline):
    ae_title = "DICOMFLOW"
    input = {"series": AnyInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> PipelineOutput:
            return self.output(list(input_container["series"]))

        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return DicomOutput([(peer(self), datasets)], "PLUSONE")


class DefaultFilePipeline(OutputPipeline):
    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return FileOutput([(beside_data(self) / "out", datasets)])


class StoreNodePipeline(OutputPipeline):
    """As the original's storeNode.py: ``saving_function=save_dicom`` with a folder."""

    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return FileOutput([(beside_data(self) / "out", datasets)], saving_function=save_dicom)


class CustomSavePipeline(OutputPipeline):
    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return FileOutput([(beside_data(self) / "out", datasets)], numbered_save)


class MultiPipeline(OutputPipeline):
    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return MultiOutput(
                [
                    DicomOutput([(peer(self), datasets)], "PLUSONE"),
                    FileOutput([(beside_data(self) / "out", datasets)]),
                    RecordingOutput([(beside_data(self) / "records" / "recorded.json", datasets)]),
                    NoOutput(),
                ]
            )


class RefusingPipeline(OutputPipeline):
    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return MultiOutput(
                [DicomOutput([(peer(self), datasets)], "PLUSONE"), RefusingOutput([])]
            )


class RaisingPipeline(OutputPipeline):
    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            return MultiOutput(
                [DicomOutput([(peer(self), datasets)], "PLUSONE"), RaisingOutput([])]
            )


class HostileUIDPipeline(OutputPipeline):
    class Processor(OutputPipeline.Processor):
        def output(self, datasets: list[Dataset]) -> PipelineOutput:
            datasets[0].StudyInstanceUID = "../../../etc"
            return FileOutput([(beside_data(self) / "out", datasets)])
