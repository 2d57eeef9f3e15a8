"""A built series: its datasets in instance order, with series-wide setters."""

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from pydicom import DataElement, Dataset
from pydicom.datadict import dictionary_VR
from pydicom.tag import Tag

from dicomflow.dicom.factory_errors import ConstructionError
from dicomflow.dicom.virtual_element import TagType


class DicomSeries:
    """The datasets of one series, as built by a factory; iterates over the datasets."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        if not datasets:
            raise ConstructionError("A series needs at least one dataset.")
        self.datasets: list[Dataset] = list(datasets)

    @property
    def pivot(self) -> Dataset:
        """The first dataset."""
        return self.datasets[0]

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)

    def __getitem__(self, tag: TagType) -> DataElement | None:
        """The element at ``tag`` of the first dataset (``None`` if absent)."""
        return self.pivot.get(Tag(tag))

    def set_shared_tag(self, tag: TagType, value: Any) -> None:
        """Set ``tag`` to ``value`` (a data element or a value) in every dataset."""
        for dataset in self.datasets:
            dataset[Tag(tag)] = _element(tag, value)

    def set_individual_tag(self, tag: TagType, values: Sequence[Any]) -> None:
        """Set ``tag`` in each dataset to the value at the same position of ``values``."""
        if len(values) != len(self.datasets):
            raise ValueError(
                f"{len(values)} values for {Tag(tag)}, but the series has "
                f"{len(self.datasets)} datasets."
            )
        for dataset, value in zip(self.datasets, values, strict=True):
            dataset[Tag(tag)] = _element(tag, value)


def _element(tag: TagType, value: Any) -> DataElement:
    if isinstance(value, DataElement):
        return _detached(value)
    return DataElement(Tag(tag), dictionary_VR(Tag(tag)), value)


def _detached(element: DataElement) -> DataElement:
    """A copy of ``element`` sharing no mutable value (each dataset gets its own)."""
    if isinstance(element.value, str | int | float | bytes) or element.value is None:
        return copy.copy(element)
    return copy.deepcopy(element)
