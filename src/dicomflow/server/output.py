"""The import path ``dicomnode.server.output`` of the pipeline library: names only
(see :mod:`dicomflow.node.output`)."""

from dicomflow.node.output import (
    ArchiveOutput,
    DicomOutput,
    FileOutput,
    MultiOutput,
    NoOutput,
    PipelineOutput,
    save_dataset,
)

__all__ = [
    "ArchiveOutput",
    "DicomOutput",
    "FileOutput",
    "MultiOutput",
    "NoOutput",
    "PipelineOutput",
    "save_dataset",
]
