"""Tag parsing: accept a tag as an int, a keyword, a ``(gggg,eeee)`` string or a
pydicom ``BaseTag``, and give back a pydicom ``BaseTag``."""

import re
from collections.abc import Callable, Iterable

from pydicom import DataElement, Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.tag import BaseTag, Tag

from dicomflow.errors import PipelineDefinitionError

TagLike = int | str | BaseTag
_TAG_TEXT = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")


def parse_tag(value: TagLike) -> BaseTag:
    """Return ``value`` as a tag.

    Raises:
        PipelineDefinitionError: if ``value`` is neither a known keyword nor a tag number.
    """
    if isinstance(value, str):
        number = tag_for_keyword(value)
        if number is not None:
            return Tag(number)
        match = _TAG_TEXT.match(value.strip())
        if match:
            return Tag(int(match[1], 16), int(match[2], 16))
    try:
        return Tag(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise PipelineDefinitionError(f'"{value}" is neither a DICOM keyword nor a tag.') from exc


def parse_tags(values: Iterable[TagLike]) -> list[BaseTag]:
    """Return every value of ``values`` as a tag."""
    return [parse_tag(value) for value in values]


def get_tag(tag: TagLike) -> Callable[[Dataset], DataElement | None]:
    """Return a function giving the element at ``tag`` of a dataset, or ``None``."""
    key = parse_tag(tag)

    def element(dataset: Dataset) -> DataElement | None:
        return dataset.get(key)

    return element
