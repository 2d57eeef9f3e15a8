"""Grinders: turn the instances collected for an input into what ``process()`` receives.

A grinder is a callable taking an ``Iterator[Dataset]`` (the instances of one
input, in arrival order) and returning the value handed to the pipeline.

- :func:`identity_grinder` -- the iterator itself, unchanged and lazy.
- :func:`list_grinder` -- a ``list[Dataset]`` in arrival order.
- :func:`tag_grinder` -- ``tag_grinder(*tags)`` makes a grinder giving one tuple
  of tag values per instance.
- :func:`dataset_list_grinder` -- a ``list[Dataset]`` of one series, sorted along
  the slice normal (then by InstanceNumber, then SOPInstanceUID).
- :func:`numpy_grinder` -- a 3-D ``float32`` array (slices, rows, columns) in
  modality units (RescaleSlope and RescaleIntercept applied), sorted as above.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

from dicomflow.dicom.keys import UID_MAX_LENGTH, shorten
from dicomflow.dicom.tags import TagLike, parse_tags
from dicomflow.errors import DicomflowError, PipelineDefinitionError

Grinder = Callable[[Iterator[Dataset]], Any]
GrindType = Any
Volume = npt.NDArray[np.float32]

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
_DECODE_ERRORS = (
    AttributeError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    TypeError,
    ValueError,
)


class GrinderError(DicomflowError, ValueError):
    """The instances of an input cannot be ground into the requested form."""


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
    """Return the instances of one series as a ``float32`` volume (slices, rows, columns).

    Instances are sorted as by :func:`dataset_list_grinder`; each instance's
    RescaleSlope and RescaleIntercept (defaults 1 and 0) are applied, so CT
    values are in Hounsfield units. A multi-frame instance contributes all its
    frames, in frame order.

    Raises:
        GrinderError: if there are no instances, more than one series, missing or
            undecodable pixel data, colour images, or frames of differing shapes.
    """
    instances = dataset_list_grinder(datasets)
    if not instances:
        raise GrinderError("numpy_grinder received no instances; a volume needs at least one.")
    stacks = [_frames(instance) for instance in instances]
    _check_shapes(instances, stacks)
    volume = np.empty((sum(len(stack) for stack in stacks), *stacks[0].shape[1:]), np.float32)
    start = 0
    for instance, stack in zip(instances, stacks, strict=True):
        frames = volume[start : start + len(stack)]
        frames[...] = stack
        frames *= _number(instance, "RescaleSlope", 1.0)
        frames += _number(instance, "RescaleIntercept", 0.0)
        start += len(stack)
    return volume


def _frames(instance: Dataset) -> npt.NDArray[Any]:
    """Return the stored pixel values of ``instance`` as (frames, rows, columns)."""
    uid = _uid(instance)
    if not any(key in instance for key in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise GrinderError(f"Instance {uid} has no pixel data.")
    samples = instance.get("SamplesPerPixel", 1)
    if samples != 1:
        raise GrinderError(
            f"Instance {uid} has SamplesPerPixel {samples}; numpy_grinder needs monochrome images."
        )
    try:
        pixels = instance.pixel_array
    except _DECODE_ERRORS as exc:
        raise GrinderError(f"Instance {uid}: pixel data cannot be decoded: {exc}") from exc
    if pixels.ndim not in (2, 3):
        raise GrinderError(f"Instance {uid} has pixel data of shape {pixels.shape}; expected 2-D.")
    return pixels if pixels.ndim == 3 else pixels[np.newaxis]


def _check_shapes(instances: list[Dataset], stacks: list[npt.NDArray[Any]]) -> None:
    expected = stacks[0].shape[1:]
    for instance, stack in zip(instances, stacks, strict=True):
        if stack.shape[1:] != expected:
            uid = _uid(instance)
            raise GrinderError(
                f"Instance {uid} has frames of {stack.shape[1]}x{stack.shape[2]} pixels; "
                f"expected {expected[0]}x{expected[1]} like the first instance of the series."
            )


def _number(instance: Dataset, keyword: str, default: float) -> float:
    value: Any = "<unreadable>"
    try:
        value = instance.get(keyword)
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError) as exc:
        raise GrinderError(
            f'Instance {_uid(instance)} has {keyword} "{shorten(value)}"; expected a number.'
        ) from exc


def _uid(instance: Dataset, keyword: str = "SOPInstanceUID") -> str:
    """Return a UID of ``instance`` in a form safe for error messages."""
    return shorten(instance.get(keyword, "<missing>"), limit=UID_MAX_LENGTH)
