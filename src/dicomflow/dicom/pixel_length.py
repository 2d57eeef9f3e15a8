"""Whether native Pixel Data is as long as the Image Pixel module says (PS3.3 C.7.6.3).

Rows x Columns x Samples per Pixel x Number of Frames values of Bits Allocated
bits each (YBR_FULL_422 and YBR_PARTIAL_422 keep two values per pixel, PS3.3
C.7.6.3.1.2), padded to an even length (PS3.5 8.1.1). Shorter Pixel Data, or
longer by a whole frame or more, contradicts the module; a few bytes more than
that are padding some devices add, which readers skip. Encapsulated
(compressed) Pixel Data has no such length and is not checked; nor is a dataset
that lacks one of these attributes or has one that is not a number.
"""

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.uid import UID

from dicomflow.errors import DatasetMismatchError

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
SUBSAMPLED = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})


def check_pixel_data_length(dataset: Dataset, transfer_syntax: UID) -> None:
    """Raise :class:`DatasetMismatchError` when native Pixel Data's length contradicts
    the dataset's Image Pixel module."""
    if transfer_syntax.is_compressed or PIXEL_DATA not in dataset:
        return
    length = _value_length(dataset.get_item(PIXEL_DATA))
    frame, frames = _frame_bits(dataset), _frames(dataset)
    if length is None or frame is None or frames is None:
        return
    expected = (frame * frames + 7) // 8
    if expected <= length < expected + max((frame + 7) // 8, 2):
        return
    raise DatasetMismatchError(
        f"Pixel Data is {length} bytes long; Rows {dataset.Rows} x Columns"
        f" {dataset.Columns} x SamplesPerPixel {dataset.get('SamplesPerPixel', 1)} x"
        f" NumberOfFrames {dataset.get('NumberOfFrames', 1)} x BitsAllocated"
        f" {dataset.BitsAllocated} bits make {expected}."
    )


def _frame_bits(dataset: Dataset) -> int | None:
    """The bits of one frame, or None if not all is known."""
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        bits = int(dataset.BitsAllocated)
        subsampled = str(dataset.get("PhotometricInterpretation", "")) in SUBSAMPLED
    except (AttributeError, TypeError, ValueError):
        return None
    return rows * columns * (2 if subsampled and samples == 3 else samples) * bits


def _frames(dataset: Dataset) -> int | None:
    try:
        return int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return None


def _value_length(element: DataElement | RawDataElement | None) -> int | None:
    if isinstance(element, RawDataElement):
        return None if element.length == UNDEFINED_LENGTH else element.length
    if element is None or not isinstance(element.value, bytes):
        return None
    return None if element.is_undefined_length else len(element.value)
