"""Grinders: turn the instances collected for an input into what ``process()`` receives.

A grinder is a callable taking an ``Iterator[Dataset]`` (the instances of one
input, in arrival order) and returning the value handed to the pipeline.

- :func:`identity_grinder` -- the iterator itself, unchanged and lazy.
- :func:`list_grinder` -- a ``list[Dataset]`` in arrival order.
- :func:`tag_grinder` -- ``tag_grinder(*tags)`` makes a grinder giving one tuple
  of tag values per instance.
- :func:`dataset_list_grinder` -- a ``list[Dataset]`` of one series, sorted along
  the slice normal (then by InstanceNumber, then SOPInstanceUID).
- :func:`numpy_grinder` -- a 3-D array (slices, rows, columns) sorted as above,
  in the stored type (``uint16``, ``int16``, ...) or, when a rescale changes
  values, in ``float64`` modality units (RescaleSlope and RescaleIntercept
  applied). Never narrowed to ``float32``.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

from dicomflow.dicom.keys import UID_MAX_LENGTH, shorten
from dicomflow.dicom.tags import TagLike, parse_tags
from dicomflow.dicom.volume import changes_values, stack_frames
from dicomflow.errors import GrinderError, PipelineDefinitionError

Grinder = Callable[[Iterator[Dataset]], Any]
GrindType = Any
Volume = npt.NDArray[Any]

__all__ = [
    "GrindType",
    "Grinder",
    "GrinderError",
    "dataset_list_grinder",
    "identity_grinder",
    "list_grinder",
    "numpy_grinder",
    "tag_grinder",
]

_SHOWN_SERIES = 5


def identity_grinder(datasets: Iterator[Dataset]) -> Iterator[Dataset]:
    """Return ``datasets`` unchanged (lazy: instances are read as the pipeline iterates)."""
    return datasets


def list_grinder(datasets: Iterable[Dataset]) -> list[Dataset]:
    """Return the instances as a list, in arrival order."""
    return list(datasets)


def tag_grinder(*tags: TagLike) -> Callable[[Iterable[Dataset]], list[tuple[Any, ...]]]:
    """Make a grinder giving, per instance, a tuple of the values of ``tags``.

    Tags may be keywords (``"PatientID"``) or tag numbers (``0x00100020``,
    ``pydicom.tag.Tag(...)``). A missing attribute gives ``None``. For example
    ``tag_grinder("SOPInstanceUID", "InstanceNumber")`` gives
    ``[("1.2.3", 1), ("1.2.4", 2), ...]`` in arrival order.

    Raises:
        PipelineDefinitionError: if no tag is given or a tag is not recognised.
    """
    if not tags:
        raise PipelineDefinitionError("tag_grinder needs at least one tag; none was given.")
    parsed = parse_tags(tags)

    def grind(datasets: Iterable[Dataset]) -> list[tuple[Any, ...]]:
        return [tuple(_value(dataset, tag) for tag in parsed) for dataset in datasets]

    grind.__name__ = grind.__qualname__ = f"tag_grinder({', '.join(map(str, tags))})"
    return grind


def _value(dataset: Dataset, tag: int) -> Any:
    return dataset[tag].value if tag in dataset else None


def dataset_list_grinder(datasets: Iterable[Dataset]) -> list[Dataset]:
    """Return the instances of one series sorted in space.

    Instances are ordered by ImagePositionPatient projected on the slice normal
    (the cross product of the ImageOrientationPatient row and column vectors).
    If any instance lacks a usable position, InstanceNumber is used instead, and
    SOPInstanceUID breaks the remaining ties.

    Raises:
        GrinderError: if the instances belong to more than one series.
    """
    instances = list(datasets)
    _check_one_series(instances)
    keys = _sort_keys(instances)
    order = sorted(range(len(instances)), key=keys.__getitem__)
    return [instances[index] for index in order]


def _check_one_series(instances: list[Dataset]) -> None:
    uids = sorted({str(instance.get("SeriesInstanceUID", "<missing>")) for instance in instances})
    if len(uids) <= 1:
        return
    shown = ", ".join(shorten(uid, limit=UID_MAX_LENGTH) for uid in uids[:_SHOWN_SERIES])
    more = f" and {len(uids) - _SHOWN_SERIES} more" if len(uids) > _SHOWN_SERIES else ""
    raise GrinderError(
        f"Expected the instances of one series; got {len(uids)} SeriesInstanceUIDs: {shown}{more}."
    )


def _sort_keys(instances: list[Dataset]) -> list[tuple[float, float, str]]:
    positions = _complete([_slice_position(instance) for instance in instances])
    numbers = _complete([_instance_number(instance) for instance in instances])
    uids = [str(instance.get("SOPInstanceUID", "")) for instance in instances]
    return list(zip(positions, numbers, uids, strict=True))


def _complete(values: list[float | None]) -> list[float]:
    """Return ``values``, or all zeros if any is missing (a partial key cannot order)."""
    present = [value for value in values if value is not None]
    return present if len(present) == len(values) else [0.0] * len(values)


def _slice_position(instance: Dataset) -> float | None:
    try:
        orientation = np.asarray(instance.ImageOrientationPatient, dtype=np.float64)
        position = np.asarray(instance.ImagePositionPatient, dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        return None
    if orientation.shape != (6,) or position.shape != (3,):
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return float(np.dot(position, normal))


def _instance_number(instance: Dataset) -> float | None:
    try:
        return float(instance.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        return None


def numpy_grinder(datasets: Iterable[Dataset]) -> Volume:
    """Return the instances of one series as a volume (slices, rows, columns).

    Instances are sorted as by :func:`dataset_list_grinder`. The stored data
    type is kept (``uint16``, ``int16``, ``float32`` Float Pixel Data, ...)
    unless an instance has a RescaleSlope other than 1 or a RescaleIntercept
    other than 0: then every instance's rescale is applied and the volume is
    ``float64`` (CT values in Hounsfield units). A multi-frame instance
    contributes all its frames, in frame order.

    Raises:
        GrinderError: if there are no instances, more than one series, missing or
            undecodable pixel data, colour images, or frames of differing shapes.
    """
    instances = dataset_list_grinder(datasets)
    if not instances:
        raise GrinderError("numpy_grinder received no instances; a volume needs at least one.")
    return stack_frames(instances, rescale=any(changes_values(ds) for ds in instances))
