"""What the engine needs of a pipeline class, its inputs and a round's work, as protocols.

The engine runs pipelines declared with :mod:`dicomflow.node` without importing it:
``AbstractPipeline`` and ``AbstractInput`` satisfy these protocols, and
``AbstractPipeline.open()`` calls the engine's assembly function
(:func:`dicomflow.engine.assembly.run`).
"""

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from pydicom import Dataset

from dicomflow.address import Address


class InputObject(Protocol):
    """One input of one patient: it is offered the patient's instances and tells when it
    holds a complete set."""

    paths: dict[str, Path]  # SOP Instance UID -> file
    required_tags: Sequence[Any]
    required_values: Mapping[Any, Any]

    @property
    def images(self) -> int: ...

    def offer(self, dataset: Dataset, path: Path | None = None, *, checked: bool = False) -> int:
        """Take ``dataset`` (raising ``InvalidDataset`` if it refuses it)."""

    def validate(self) -> bool: ...

    def __iter__(self) -> Iterator[Dataset]: ...


class InputClass(Protocol):
    """A declared input: which instances it accepts, and a fresh input per patient."""

    def __call__(self, options: Any = None) -> InputObject: ...

    def accepts(self, dataset: Dataset) -> bool: ...


class RoundWork(Protocol):
    """What a round's job hands the pipeline: its instances per input and its folders."""

    @property
    def round_id(self) -> str: ...

    @property
    def patient_key(self) -> str: ...

    @property
    def inputs(self) -> Mapping[str, Sequence[tuple[str, Path]]]:
        """Per input, the ``(SOP Instance UID, file)`` pairs of its instances."""

    @property
    def work_dir(self) -> Path: ...

    @property
    def output_dir(self) -> Path: ...

    @property
    def endpoints(self) -> Sequence[Address]: ...

    @property
    def ae_title(self) -> str: ...

    @property
    def caller(self) -> tuple[str, str] | None:
        """The AE title and IP of the peer that completed the round, if known."""


class PipelineClass(Protocol):
    """A pipeline class (an ``AbstractPipeline`` subclass, the class itself) as the engine
    runs it; the engine also reads its ``__module__`` and ``__qualname__``."""

    @property
    def input(self) -> Mapping[str, Any]:
        """Name -> input class (:class:`InputClass`)."""

    @property
    def patient_identifier_tag(self) -> Any: ...

    def _input_options(self, ae_title: str) -> Any:
        """The options each input of a patient is made with, in a node."""

    def _run_round(self, work: RoundWork) -> int:
        """Process one round (in a queue worker): its inputs through ``process()``, the
        results written into ``work.output_dir``; return the number of datasets."""
