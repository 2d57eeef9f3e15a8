"""A valid pipeline for ``dicomflow serve``: returns every instance with ImageComments set."""

from typing import Any

from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor

MARK = "copied by the CLI test pipeline"


class AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]


class CliCopyPipeline(AbstractPipeline):
    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            datasets = list(input_container["any"])
            for dataset in datasets:
                dataset.ImageComments = MARK
            return datasets
