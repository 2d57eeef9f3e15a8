"""The pipeline API: declare inputs, a processor and endpoints; the node does the rest."""

from dicomflow.address import Address
from dicomflow.node.container import InputContainer
from dicomflow.node.dynamic_input import DynamicInput
from dicomflow.node.historic import HistoricAbstractInput
from dicomflow.node.input import AbstractInput
from dicomflow.node.output import (
    ArchiveOutput,
    DicomOutput,
    FileOutput,
    MultiOutput,
    NoOutput,
    PipelineOutput,
)
from dicomflow.node.pipeline import AbstractPipeline, AbstractQueuedPipeline
from dicomflow.node.processor import AbstractProcessor, is_picklable

__all__ = [
    "AbstractInput",
    "AbstractPipeline",
    "AbstractProcessor",
    "AbstractQueuedPipeline",
    "Address",
    "ArchiveOutput",
    "DicomOutput",
    "DynamicInput",
    "FileOutput",
    "HistoricAbstractInput",
    "InputContainer",
    "MultiOutput",
    "NoOutput",
    "PipelineOutput",
    "is_picklable",
]
