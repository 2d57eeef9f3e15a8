"""``AbstractInput``: one named input of a pipeline, for one patient.

The node offers every received instance to every input of the pipeline. An
input accepts it when the instance has every tag of ``required_tags`` and the
values of ``required_values``. When all inputs of a patient ``validate()``,
each input's ``get_data()`` (by default its ``image_grinder``) prepares what
``process()`` receives under the input's name.

In the node process an input holds the instances' headers (pixel data and every
element over 4 kB left on disk, see :mod:`dicomflow.dicom.header`); in the
processing worker it holds the full datasets.
"""

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydicom import Dataset, dcmread
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from dicomflow.dicom.grinders import identity_grinder
from dicomflow.dicom.tags import TagLike, parse_tags
from dicomflow.errors import PipelineDefinitionError

Grinder = Callable[[Iterator[Dataset]], Any]


class AbstractInput:
    """Subclass and set ``required_tags``, ``required_values``, ``image_grinder``
    and ``validate()``."""

    required_tags: ClassVar[list[TagLike]] = []
    required_values: ClassVar[dict[TagLike, Any]] = {}
    image_grinder: Grinder = staticmethod(identity_grinder)

    def __init__(self) -> None:
        self.data: dict[str, Dataset] = {}
        self.paths: dict[str, Path] = {}

    @property
    def images(self) -> int:
        """The number of instances this input holds."""
        return len(self.data)

    def validate(self) -> bool:
        """Return ``True`` when the input has what processing needs (default: ≥ 1 image)."""
        return self.images > 0

    def get_data(self) -> Any:
        """Return what ``process()`` receives for this input: the grinder's result."""
        return type(self).image_grinder(iter(self.data.values()))

    def accepts(self, dataset: Dataset) -> bool:
        """Tell whether ``dataset`` has every required tag and required value."""
        tags, values = _requirements(type(self))
        if any(tag not in dataset for tag in tags):
            return False
        return all(_value_matches(dataset, tag, expected) for tag, expected in values)

    def add_image(self, sop_instance_uid: str, dataset: Dataset, path: Path) -> None:
        """Hold ``dataset`` (stored at ``path``) under its SOP Instance UID."""
        self.data[sop_instance_uid] = dataset
        self.paths[sop_instance_uid] = path

    def load(self, paths: Iterable[tuple[str, Path]]) -> None:
        """Read the full datasets from ``paths`` (used in the processing worker)."""
        for sop_instance_uid, path in paths:
            self.add_image(sop_instance_uid, dcmread(path), path)

    @classmethod
    def check_definition(cls, name: str) -> None:
        """Raise :class:`PipelineDefinitionError` naming the class and attribute if wrong."""
        try:
            _requirements(cls)
        except PipelineDefinitionError as exc:
            raise PipelineDefinitionError(f'Input "{name}" ({cls.__qualname__}): {exc}') from exc
        if not callable(cls.image_grinder):
            raise PipelineDefinitionError(
                f'Input "{name}" ({cls.__qualname__}): image_grinder is not callable.'
            )


def _requirements(cls: type[AbstractInput]) -> tuple[list[BaseTag], list[tuple[BaseTag, Any]]]:
    cached: tuple[list[BaseTag], list[tuple[BaseTag, Any]]] | None = cls.__dict__.get(
        "_dicomflow_requirements"
    )
    if cached is not None:
        return cached
    if not isinstance(cls.required_tags, list | tuple | set):
        raise PipelineDefinitionError("required_tags must be a list of tags or keywords.")
    if not isinstance(cls.required_values, dict):
        raise PipelineDefinitionError("required_values must be a dict of tag -> value.")
    tags = _parse("required_tags", cls.required_tags)
    keys = _parse("required_values", cls.required_values)
    values = list(zip(keys, cls.required_values.values(), strict=True))
    result = (tags, values)
    cls._dicomflow_requirements = result  # type: ignore[attr-defined]
    return result


def _parse(attribute: str, tags: Iterable[TagLike]) -> list[BaseTag]:
    try:
        return parse_tags(tags)
    except PipelineDefinitionError as exc:
        raise PipelineDefinitionError(f"{attribute}: {exc}") from exc


def _value_matches(dataset: Dataset, tag: BaseTag, expected: Any) -> bool:
    element = dataset.get(tag)
    if element is None:
        return False
    value = element.value
    if isinstance(expected, list | tuple) and not isinstance(value, MultiValue | list | tuple):
        return any(_equal(value, option) for option in expected)  # a list means "one of"
    return _equal(value, expected)


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return bool(value == expected)  # IS/DS by number: "1.0" matches 1
    if isinstance(value, str) or hasattr(value, "original_string"):
        return str(value).strip() == str(expected).strip()
    return bool(value == expected)
