"""Alias of :mod:`dicomflow.node.output` for seed-style imports."""

from dicomflow.node.output import DicomOutput, FileOutput, NoOutput, PipelineOutput

__all__ = ["DicomOutput", "FileOutput", "NoOutput", "PipelineOutput"]
