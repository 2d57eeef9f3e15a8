"""The pipeline of the ``node`` receiver in ``bench/receivers.py``: it keeps every
instance and never completes, so the node only receives and spools."""

from typing import Any

from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor


class NeverComplete(AbstractInput):
    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        return False


class SpoolOnlyPipeline(AbstractPipeline):
    ae_title = "DICOMFLOW"
    input = {"any": NeverComplete}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return None
