"""Alias of :mod:`dicomflow.node` for seed-style imports."""

from dicomflow.node import AbstractPipeline
from dicomflow.node.output import DicomOutput, FileOutput, NoOutput, PipelineOutput

__all__ = ["AbstractPipeline", "DicomOutput", "FileOutput", "NoOutput", "PipelineOutput"]
