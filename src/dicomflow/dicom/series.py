"""``DicomSeries``: the instances of one series, read and written as one object.

The instances are sorted when the first one has an InstanceNumber: by the
z coordinate of ImagePositionPatient where present, else by InstanceNumber.
Without InstanceNumber they keep their order and are numbered 1, 2, ...

Reading a tag gives the first instance's element, or for tags that vary across
a series (:data:`SERIES_VARYING_TAGS`) a list with one element per instance.
Attribute access by keyword (``series.PatientID``) reads the first instance.
Setting a tag sets it on every instance (a list for a varying tag, one value
per instance). ``series.image.raw`` is the pixel volume (slices, rows,
columns) in the stored type, or ``float64`` when the instances carry a rescale.
"""

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy.typing as npt
from pydicom import DataElement, Dataset
from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.tag import Tag

from dicomflow.dicom.keys import UID_MAX_LENGTH, shorten
from dicomflow.dicom.volume import has_rescale, stack_frames
from dicomflow.errors import InvalidDataset, MissingPivotDataset

SERIES_VARYING_TAGS = frozenset(
    {
        0x0008_0018,  # SOPInstanceUID
        0x0020_0013,  # InstanceNumber
        0x0020_0032,  # ImagePositionPatient
        0x0020_1041,  # SliceLocation
        0x0028_0106,  # SmallestImagePixelValue
        0x0028_0107,  # LargestImagePixelValue
        0x0028_1052,  # RescaleIntercept
        0x0028_1053,  # RescaleSlope
        0x0054_1330,  # ImageIndex
        0x7FE0_0010,  # PixelData
    }
)


def shared_tag(datasets: list[Dataset], tag: int) -> bool:
    """Tell whether every dataset has the same value (or absence) of ``tag``.

    Raises:
        ValueError: if ``datasets`` is empty.
    """
    if not datasets:
        raise ValueError("Cannot tell whether a tag is shared by no datasets.")
    first = datasets[0].get(tag)
    return all(dataset.get(tag) == first for dataset in datasets)


@dataclass(frozen=True)
class SeriesImage:
    """The pixel volume of a series: ``raw`` is (slices, rows, columns)."""

    raw: npt.NDArray[Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)


class DicomSeries:
    """The instances of one series (see the module documentation)."""

    def __init__(self, datasets: Sequence[Dataset]) -> None:
        datasets = list(datasets)
        if not datasets:
            raise MissingPivotDataset("Cannot construct a DICOM series from no datasets.")
        self.series_instance_UID = _single_series(datasets)
        self.datasets = datasets
        if "InstanceNumber" in datasets[0]:
            self.datasets.sort(key=_position)
        else:
            self.set_individual_tag(0x0020_0013, list(range(1, len(datasets) + 1)))
        self.pivot = self.datasets[0]

    @cached_property
    def image(self) -> SeriesImage:
        """The pixel volume, built on first use."""
        return SeriesImage(stack_frames(self.datasets, rescale=has_rescale(self.pivot)))

    def __iter__(self) -> Iterator[Dataset]:
        return iter(self.datasets)

    def __len__(self) -> int:
        return len(self.datasets)

    def __getitem__(self, tag: int | str) -> DataElement | list[DataElement | None] | None:
        key = Tag(tag)
        if key in SERIES_VARYING_TAGS:
            return [dataset.get(key) for dataset in self.datasets]
        element: DataElement | None = self.pivot.get(key)
        return element

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in keyword_dict:
            raise AttributeError(name)
        return self.__dict__["datasets"][0][keyword_dict[name]].value

    def __setitem__(self, tag: int | str, value: Any) -> None:
        key = Tag(tag)
        if key in SERIES_VARYING_TAGS:
            if not isinstance(value, list):
                raise TypeError(
                    f"Tag {key} varies across a series; give a list of {len(self)} values."
                )
            self.set_individual_tag(key, value)
        else:
            self.set_shared_tag(key, value)

    def set_shared_tag(self, tag: int, value: Any) -> None:
        """Set ``tag`` to ``value`` on every instance."""
        for dataset in self.datasets:
            dataset[tag] = _element(tag, value)

    def set_individual_tag(self, tag: int, values: list[Any]) -> None:
        """Set ``tag`` on each instance to its value in ``values``.

        Raises:
            ValueError: if there is not one value per instance.
        """
        if len(values) != len(self):
            raise ValueError(
                f"{len(values)} values were given for {len(self)} instances; expected one each."
            )
        for dataset, value in zip(self.datasets, values, strict=True):
            dataset[tag] = _element(tag, value)

    def shared_tag(self, tag: int) -> bool:
        return shared_tag(self.datasets, tag)

    def can_copy_into_image(self, image: npt.NDArray[Any]) -> bool:
        """Tell whether ``image`` has one slice per instance."""
        return bool(image.shape[-3] == len(self.datasets))


def _element(tag: int, value: Any) -> DataElement:
    if isinstance(value, DataElement):
        return _detached(value)
    return DataElement(tag, dictionary_VR(tag), value)


def _detached(element: DataElement) -> DataElement:
    """A copy of ``element`` sharing no mutable value (each instance gets its own)."""
    if isinstance(element.value, str | int | float | bytes) or element.value is None:
        return copy.copy(element)
    return copy.deepcopy(element)


def _position(dataset: Dataset) -> float:
    if "ImagePositionPatient" in dataset:
        return float(dataset.ImagePositionPatient[2])
    return float(dataset.InstanceNumber)


def _single_series(datasets: list[Dataset]) -> str | None:
    uids = {dataset.get("SeriesInstanceUID") for dataset in datasets}
    if len(uids) > 1:
        shown = ", ".join(sorted(shorten(uid, UID_MAX_LENGTH) for uid in uids)[:5])
        raise InvalidDataset(f"Expected the instances of one series; got {len(uids)}: {shown}.")
    uid = uids.pop()
    return None if uid is None else str(uid)


__all__ = ["SERIES_VARYING_TAGS", "DicomSeries", "SeriesImage", "shared_tag"]
