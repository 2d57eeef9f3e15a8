"""Dataset headers: a dataset without its bulk data, cheap to keep in memory.

A node keeps the header of every instance that waits for its patient's other
inputs, so a header leaves out the pixel data group and every element whose
value is longer than :data:`HEADER_VALUE_BYTES` (a private OB, an icon image
sequence, a long text): those stay in the instance's file on disk only.
"""

from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

PIXEL_GROUP_START = 0x7FE00000
HEADER_VALUE_BYTES = 4096
UNDEFINED_LENGTH = 0xFFFFFFFF


def header_of(dataset: Dataset) -> Dataset:
    """Return a dataset with the short elements of ``dataset`` before the pixel data group.

    Elements are shared, not copied or decoded, so this is cheap even for
    datasets received over the network and not yet parsed.
    """
    elements = {
        tag: element
        for tag, element in dataset._dict.items()
        if tag < PIXEL_GROUP_START and value_size(element) <= HEADER_VALUE_BYTES
    }
    header = Dataset(elements)
    header.set_original_encoding(*_encoding(dataset))
    return header


def value_size(element: RawDataElement | DataElement) -> int:
    """About how many bytes the value of ``element`` takes, without decoding it."""
    if isinstance(element, RawDataElement):
        if element.length != UNDEFINED_LENGTH:
            return int(element.length)
        return len(element.value or b"")
    return _size(element.value)


def _size(value: object) -> int:
    if isinstance(value, Sequence):
        return sum(value_size(e) + 8 for item in value for e in item._dict.values())
    if isinstance(value, bytes | bytearray | memoryview | str):
        return len(value)
    if isinstance(value, MultiValue | list | tuple):
        return sum(_size(item) for item in value)
    return 8


def _encoding(dataset: Dataset) -> tuple[bool | None, bool | None, str | list[str]]:
    implicit, little = dataset.original_encoding
    charset = dataset.original_character_set
    return implicit, little, charset if isinstance(charset, str) else list(charset)
