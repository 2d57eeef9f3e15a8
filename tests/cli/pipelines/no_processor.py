"""A pipeline with neither a nested ``Processor`` nor a ``process()`` method."""

from dicomflow.node import AbstractInput, AbstractPipeline


class CTInput(AbstractInput):
    required_tags = ["SOPInstanceUID"]


class NoProcessorPipeline(AbstractPipeline):
    input = {"ct": CTInput}
