"""A Python file that defines no AbstractPipeline subclass."""

from dicomflow.node import AbstractInput


class LonelyInput(AbstractInput):
    required_tags = ["SOPInstanceUID"]
