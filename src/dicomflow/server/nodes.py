"""The pipeline library's ``server.nodes`` path of :mod:`dicomflow.node.pipeline`."""

from dicomflow.node.pipeline import AbstractPipeline, AbstractQueuedPipeline

__all__ = ["AbstractPipeline", "AbstractQueuedPipeline"]
