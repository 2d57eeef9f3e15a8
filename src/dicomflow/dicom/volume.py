"""Stack the pixel data of sorted instances into one array, keeping its data type.

- :func:`stored_dtype` -- the NumPy type of an instance's stored pixel values
  (``uint16`` for unsigned 16-bit, ``int16`` for signed, ``float32`` for Float
  Pixel Data, ``float64`` for Double Float Pixel Data).
- :func:`stack_frames` -- a (frames, rows, columns) array of instances in the
  order given. Without rescaling it keeps the stored type; with rescaling
  (RescaleSlope and RescaleIntercept applied per instance) it is ``float64``.
  Values are never narrowed to ``float32``.
"""

from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

from dicomflow.dicom.keys import UID_MAX_LENGTH, shorten
from dicomflow.errors import GrinderError

_UNSIGNED: dict[int, type[np.unsignedinteger[Any]]] = {
    8: np.uint8,
    16: np.uint16,
    32: np.uint32,
    64: np.uint64,
}
_SIGNED: dict[int, type[np.signedinteger[Any]]] = {
    8: np.int8,
    16: np.int16,
    32: np.int32,
    64: np.int64,
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DECODE_ERRORS = (
    AttributeError,
    KeyError,
    NotImplementedError,
    RuntimeError,
    TypeError,
    ValueError,
)


def stored_dtype(instance: Dataset) -> np.dtype[Any] | None:
    """Return the type of the stored pixel values of ``instance``, or ``None`` if unsupported."""
    if "FloatPixelData" in instance:
        return np.dtype(np.float32)
    if "DoubleFloatPixelData" in instance:
        return np.dtype(np.float64)
    table = _SIGNED if instance.get("PixelRepresentation", 0) == 1 else _UNSIGNED
    found = table.get(instance.get("BitsAllocated"))
    return None if found is None else np.dtype(found)


def has_rescale(instance: Dataset) -> bool:
    """Tell whether ``instance`` carries both RescaleSlope and RescaleIntercept."""
    return "RescaleSlope" in instance and "RescaleIntercept" in instance


def changes_values(instance: Dataset) -> bool:
    """Tell whether the rescale of ``instance`` changes its stored values."""
    slope = number(instance, "RescaleSlope", 1.0)
    return slope != 1.0 or number(instance, "RescaleIntercept", 0.0) != 0.0


def stack_frames(
    instances: list[Dataset], *, rescale: bool, dtype: np.dtype[Any] | None = None
) -> npt.NDArray[Any]:
    """Return the frames of ``instances`` in the given order as one (frames, rows, columns) array.

    With ``rescale`` each instance's RescaleSlope and RescaleIntercept (defaults
    1 and 0) are applied in ``float64``. Otherwise the array has ``dtype``, or
    the common type of the decoded pixel values when ``dtype`` is ``None``.

    Raises:
        GrinderError: if there are no instances, missing or undecodable pixel
            data, colour images, or frames of differing shapes.
    """
    if not instances:
        raise GrinderError("No instances were given; a volume needs at least one.")
    stacks = [frames(instance) for instance in instances]
    _check_shapes(instances, stacks)
    if rescale:
        dtype = np.dtype(np.float64)
    elif dtype is None:
        dtype = np.result_type(*(stack.dtype for stack in stacks))
    volume = np.empty((sum(len(stack) for stack in stacks), *stacks[0].shape[1:]), dtype)
    start = 0
    for instance, stack in zip(instances, stacks, strict=True):
        part = volume[start : start + len(stack)]
        part[...] = stack
        if rescale:
            part *= number(instance, "RescaleSlope", 1.0)
            part += number(instance, "RescaleIntercept", 0.0)
        start += len(stack)
    return volume


def frames(instance: Dataset) -> npt.NDArray[Any]:
    """Return the stored pixel values of ``instance`` as (frames, rows, columns)."""
    uid = safe_uid(instance)
    if not any(keyword in instance for keyword in _PIXEL_KEYWORDS):
        raise GrinderError(f"Instance {uid} has no pixel data.")
    samples = instance.get("SamplesPerPixel", 1)
    if samples != 1:
        raise GrinderError(
            f"Instance {uid} has SamplesPerPixel {samples}; a volume needs monochrome images."
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
            raise GrinderError(
                f"Instance {safe_uid(instance)} has frames of {stack.shape[1]}x{stack.shape[2]} "
                f"pixels; expected {expected[0]}x{expected[1]} like the first instance."
            )


def number(instance: Dataset, keyword: str, default: float) -> float:
    """Return the numeric value of ``keyword`` in ``instance`` (``default`` if absent or empty)."""
    value: Any = "<unreadable>"
    try:
        value = instance.get(keyword)
        return default if value is None or value == "" else float(value)
    except (TypeError, ValueError) as exc:
        raise GrinderError(
            f'Instance {safe_uid(instance)} has {keyword} "{shorten(value)}"; expected a number.'
        ) from exc


def safe_uid(instance: Dataset, keyword: str = "SOPInstanceUID") -> str:
    """Return a UID of ``instance`` in a form safe for error messages."""
    return shorten(instance.get(keyword, "<missing>"), limit=UID_MAX_LENGTH)
