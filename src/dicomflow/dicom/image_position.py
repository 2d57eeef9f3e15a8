"""Image positions of a series's slices, extrapolated from one slice."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydicom import Dataset

from dicomflow.errors import InvalidDataset

_REQUIRED = (
    "SliceThickness",
    "PatientPosition",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
)


def extrapolate_image_position_patient(
    slice_thickness: float,
    orientation: int,
    initial_position: Sequence[float],
    image_orientation: Sequence[float],
    image_number: int,
    slices: int,
) -> list[list[float]]:
    """Return ImagePositionPatient ``[x, y, z]`` of slices 1 .. ``slices``.

    Slices are ``slice_thickness`` apart along the normal of
    ``image_orientation`` (row and column direction cosines), in the
    direction of ``orientation`` (+1 or -1); ``initial_position`` is the
    position of slice ``image_number``.
    """
    row, column = (
        np.asarray(image_orientation[:3], float),
        np.asarray(image_orientation[3:6], float),
    )
    step = float(slice_thickness) * orientation * np.cross(row, column)
    start = np.asarray(initial_position, float)
    return [
        [float(value) for value in start + (index - (image_number - 1)) * step]
        for index in range(slices)
    ]


def extrapolate_image_position_patient_dataset(dataset: Dataset, slices: int) -> list[list[float]]:
    """Extrapolate positions from one slice of a series; head-first series go towards -z.

    Raises:
        InvalidDataset: if the dataset lacks SliceThickness, PatientPosition,
            InstanceNumber, ImagePositionPatient (3 values) or
            ImageOrientationPatient (6 values).
    """
    missing = [keyword for keyword in _REQUIRED if keyword not in dataset]
    if missing:
        raise InvalidDataset(f"Cannot extrapolate image positions: missing {', '.join(missing)}.")
    _check_count(dataset, "ImagePositionPatient", 3)
    _check_count(dataset, "ImageOrientationPatient", 6)
    orientation = -1 if str(dataset.PatientPosition).startswith("HF") else 1
    return extrapolate_image_position_patient(
        float(dataset.SliceThickness),
        orientation,
        [float(value) for value in dataset.ImagePositionPatient],
        [float(value) for value in dataset.ImageOrientationPatient],
        int(dataset.InstanceNumber),
        slices,
    )


def _check_count(dataset: Dataset, keyword: str, count: int) -> None:
    found = dataset[keyword].VM
    if found != count:
        raise InvalidDataset(f"{keyword} has {found} values; expected {count}.")


def sort_datasets(dataset: Dataset) -> Any:
    """Sort key: the z of ImagePositionPatient if present, else InstanceNumber."""
    if "ImagePositionPatient" in dataset:
        return dataset.ImagePositionPatient[2]
    return dataset.InstanceNumber
