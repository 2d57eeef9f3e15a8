"""Values of single elements read straight from their encoded bytes.

Checks made on every received instance (its UIDs, its Image Pixel module) read
a handful of elements. pydicom's conversion of an element costs ~20 µs (tag
lookups, hooks, a value object); reading the raw bytes costs ~1 µs. Elements
pydicom has already converted are read from their value.
"""

import struct

from pydicom import Dataset
from pydicom.dataelem import RawDataElement


def text_value(dataset: Dataset, tag: int) -> str | None:
    """A text element (UI, CS, IS...) without padding, or None if absent."""
    element = dataset.get_item(tag)
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00 ")
    return None if value is None else str(value).strip("\x00 ")


def us_value(dataset: Dataset, tag: int) -> int | None:
    """An unsigned short (US) element, or None if absent or not two bytes long."""
    element = dataset.get_item(tag)
    if element is None:
        return None
    if isinstance(element, RawDataElement):
        if element.value is None or len(element.value) != 2:
            return None
        little = dataset.original_encoding[1] is not False
        return int(struct.unpack("<H" if little else ">H", element.value)[0])
    return element.value if isinstance(element.value, int) else None
