"""Pipelines whose outputs are marked de-identified (importable by the processing
workers): the endpoint their test writes in ``records/endpoint.txt``, the folder
``records/files``."""

from typing import Any

from sample_pipelines import CopyPipeline, records_directory

from dicomflow.node.output import DicomOutput, FileOutput
from dicomflow.node.processor import AbstractProcessor
from dicomflow.settings import parse_endpoint


class DeidOutputsPipeline(CopyPipeline):
    """Returns its inputs as a de-identified DicomOutput and a de-identified FileOutput,
    and a plain FileOutput of the same datasets."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            records = records_directory(self)
            address = parse_endpoint((records / "endpoint.txt").read_text())
            datasets = list(input_container["any"])
            return [
                DicomOutput([(address, datasets)], deidentify=True),
                FileOutput([(records / "files", datasets)], deidentify=True),
                FileOutput([(records / "plain", datasets)]),
            ]
