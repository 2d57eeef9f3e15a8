"""An input whose ``required_tags`` holds a misspelt keyword."""

from typing import Any

from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor


class MisspeltInput(AbstractInput):
    required_tags = ["SOPInstanceUID", "SliceThiknes"]


class BogusKeywordPipeline(AbstractPipeline):
    input = {"ct": MisspeltInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return None
