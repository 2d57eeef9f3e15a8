"""``AbstractProcessor``: the code that runs in the isolated worker process.

Declare it nested in the pipeline, named ``Processor``::

    class MyPipeline(AbstractPipeline):
        class Processor(AbstractProcessor):
            def process(self, input_container):
                ...

Only the class travels to the worker (by reference, not by pickling the node),
so the processor must not rely on state of the running node: use module-level
constants or the pipeline's class attributes (``self.pipeline``).
"""

import logging
import pickle
from pathlib import Path
from typing import Any

PROCESS_LOGGER = "dicomflow.process"


class AbstractProcessor:
    """Subclass and implement :meth:`process`."""

    pipeline: Any = None
    round_id: str = ""
    patient_key: str = ""
    working_directory: Path = Path()
    logger: logging.Logger = logging.getLogger(PROCESS_LOGGER)

    def bind(self, pipeline: Any, round_id: str, patient_key: str, working: Path) -> None:
        """Give the processor its context (called by the worker before :meth:`process`)."""
        self.pipeline = pipeline
        self.round_id = round_id
        self.patient_key = patient_key
        self.working_directory = working
        self.logger = logging.getLogger(f"{PROCESS_LOGGER}.{getattr(pipeline, '__name__', '')}")

    def process(self, input_container: Any) -> Any:
        """Return datasets, ``PipelineOutput`` objects or ``None`` (no output, the default)."""
        return None


class LegacyProcessor(AbstractProcessor):
    """Calls ``process()`` defined directly on the pipeline (the pre-processor style)."""

    def process(self, input_container: Any) -> Any:
        pipeline = self.pipeline.__new__(self.pipeline)
        pipeline._in_worker = True  # post_init() ran in the node, not again here
        pipeline.__init__(start=False)
        return pipeline.process(input_container)


def is_picklable(obj: object) -> bool:
    """Tell whether ``obj`` can be sent to another process (pickled and unpickled)."""
    try:
        pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # anything pickling or unpickling raises means "no"
        return False
    return True
