"""``input`` holds an instance of the input class instead of the class."""

from typing import Any

from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor


class CTInput(AbstractInput):
    required_tags = ["SOPInstanceUID"]


class InstanceInputPipeline(AbstractPipeline):
    input = {"ct": CTInput()}  # type: ignore[dict-item]

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return None
