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

from dicomflow.dicom.element_values import text_value, us_value
from dicomflow.errors import DatasetMismatchError

PIXEL_DATA = 0x7FE00010
SAMPLES_PER_PIXEL, PHOTOMETRIC_INTERPRETATION = 0x00280002, 0x00280004
NUMBER_OF_FRAMES, ROWS, COLUMNS, BITS_ALLOCATED = 0x00280008, 0x00280010, 0x00280011, 0x00280100
UNDEFINED_LENGTH = 0xFFFFFFFF
SUBSAMPLED = frozenset({"YBR_FULL_422", "YBR_PARTIAL_422"})


def check_pixel_data_length(dataset: Dataset, transfer_syntax: UID) -> None:
    """Raise :class:`DatasetMismatchError` when native Pixel Data's length contradicts
    the dataset's Image Pixel module."""
    if transfer_syntax.is_compressed or PIXEL_DATA not in dataset:
        return
    length = _value_length(dataset.get_item(PIXEL_DATA))
    module = _module(dataset)
    if length is None or module is None:
        return
    rows, columns, samples, frames, bits = module
    frame = rows * columns * samples * bits
    expected = (frame * frames + 7) // 8
    if expected <= length < expected + max((frame + 7) // 8, 2):
        return
    raise DatasetMismatchError(
        f"Pixel Data is {length} bytes long; Rows {rows} x Columns {columns} x"
        f" {samples} values per pixel x NumberOfFrames {frames} x BitsAllocated {bits}"
        f" bits make {expected}."
    )


def _module(dataset: Dataset) -> tuple[int, int, int, int, int] | None:
    """Rows, Columns, values per pixel, frames and Bits Allocated, or None if not all
    are known."""
    rows, columns, bits = (us_value(dataset, tag) for tag in (ROWS, COLUMNS, BITS_ALLOCATED))
    if rows is None or columns is None or bits is None:
        return None
    samples = us_value(dataset, SAMPLES_PER_PIXEL) or 1
    if samples == 3 and text_value(dataset, PHOTOMETRIC_INTERPRETATION) in SUBSAMPLED:
        samples = 2
    frames = text_value(dataset, NUMBER_OF_FRAMES) or "1"
    if not frames.isdigit():
        return None
    return rows, columns, samples, max(int(frames), 1), bits


def _value_length(element: DataElement | RawDataElement | None) -> int | None:
    if isinstance(element, RawDataElement):
        return None if element.length == UNDEFINED_LENGTH else element.length
    if element is None or not isinstance(element.value, bytes):
        return None
    return None if element.is_undefined_length else len(element.value)
