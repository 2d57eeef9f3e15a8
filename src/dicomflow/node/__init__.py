"""The pipeline API: declare inputs, a processor and endpoints; the node does the rest."""

from dicomflow.net.address import Address
from dicomflow.node.dynamic_input import DynamicInput
from dicomflow.node.input import AbstractInput
from dicomflow.node.output import (
    ArchiveOutput,
    DicomOutput,
    FileOutput,
    NoOutput,
    PipelineOutput,
)
from dicomflow.node.pipeline import AbstractPipeline
from dicomflow.node.processor import AbstractProcessor, is_picklable
from dicomflow.node.worker import InputContainer

__all__ = [
    "AbstractInput",
    "AbstractPipeline",
    "AbstractProcessor",
    "Address",
    "ArchiveOutput",
    "DicomOutput",
    "DynamicInput",
    "FileOutput",
    "InputContainer",
    "NoOutput",
    "PipelineOutput",
    "is_picklable",
]
