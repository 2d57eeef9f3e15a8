"""The pipeline used by ``bench/latency.py``: records when ``process()`` starts."""

import time
from typing import Any

from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor


class AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]


class StampPipeline(AbstractPipeline):
    ae_title = "BENCH"
    input = {"any": AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            stamp = time.time()
            folder = self.working_directory.parents[2] / "stamps"
            folder.mkdir(exist_ok=True)
            partial = folder / f"{input_container.round_id}.part"
            partial.write_text(repr(stamp))
            partial.rename(partial.with_suffix(".txt"))
            return None
