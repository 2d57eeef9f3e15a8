"""A pipeline whose output sends itself from the worker (to the endpoint its test writes
in ``records/endpoint.txt``): the worker must send to a TLS address with the node's files."""

from typing import Any

from pydicom import Dataset
from sample_pipelines import CopyPipeline, mark, records_directory

from dicomflow.node.output import DicomOutput
from dicomflow.node.processor import AbstractProcessor
from dicomflow.settings import parse_endpoint


class SelfSendingOutput(DicomOutput):
    """A DicomOutput with a send() of its own: sent by the worker, not the outbox."""

    def send(self) -> bool:
        return super().send()


class WorkerSendsPipeline(CopyPipeline):
    """Sends its results itself, from the worker, to the endpoint in ``records/``."""

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            text = (records_directory(self) / "endpoint.txt").read_text()
            datasets: list[Dataset] = mark(input_container["any"])
            return SelfSendingOutput([(parse_endpoint(text), datasets)], "WORKER")
