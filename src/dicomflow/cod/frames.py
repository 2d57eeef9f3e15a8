"""Frame offset tables: where each frame of a multi-frame instance lies in the series tar.

``offset_tables`` in an instance's metadata record (only when NumberOfFrames > 1)::

    {"CustomOffsetTable": [start_byte, ...], "CustomOffsetTableLengths": [length, ...],
     "Fragments": [[[start_byte, end_byte], ...], ...]}

Positions are absolute within the tar (start inclusive, end exclusive). For
native pixel data frame k is ``[start, start + length)``; for encapsulated
data it is the frame's fragment bytes. ``Fragments`` is present only when a
frame spans several fragments, and then lists each frame's fragment spans.
Big endian, deflated and 1-bit native data get no table.
"""

import io
import struct
from collections.abc import Callable
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError

from dicomflow.errors import CODNotFoundError

PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
Span = tuple[int, int]


def offset_tables(data: bytes, base: int = 0) -> dict[str, Any] | None:
    """Return the offset tables of a Part-10 instance stored at ``base``, or None.

    None when the instance has one frame, or its frames cannot be located.
    """
    frames = frame_spans(data)
    if frames is None:
        return None
    tables: dict[str, Any] = {
        "CustomOffsetTable": [base + spans[0][0] for spans in frames],
        "CustomOffsetTableLengths": [sum(end - start for start, end in spans) for spans in frames],
    }
    if any(len(spans) > 1 for spans in frames):
        tables["Fragments"] = [[[base + s, base + e] for s, e in spans] for spans in frames]
    return tables


def table_spans(tables: dict[str, Any], index: int) -> list[Span]:
    """Return the (start, end) spans of frame ``index`` from stored offset tables."""
    if "Fragments" in tables:
        return [(int(start), int(end)) for start, end in tables["Fragments"][index]]
    start = int(tables["CustomOffsetTable"][index])
    return [(start, start + int(tables["CustomOffsetTableLengths"][index]))]


def frame_spans(data: bytes) -> list[list[Span]] | None:
    """Return each frame's byte spans within ``data`` (a Part-10 instance), or None."""
    file = io.BytesIO(data)
    try:
        ds = dcmread(file, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError):
        return None
    frame_count = int(ds.get("NumberOfFrames", 1) or 1)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if frame_count < 2 or syntax is None or syntax.is_deflated or not syntax.is_little_endian:
        return None
    value = _pixel_value(data, file.tell(), syntax.is_implicit_VR)
    if value is None:
        return None
    start, length = value
    if length == UNDEFINED_LENGTH:
        return _encapsulated_spans(data, start, frame_count)
    return _native_spans(ds, start, length, frame_count)


def _pixel_value(data: bytes, tag_offset: int, implicit: bool) -> Span | None:
    """Return (value start, value length) of the top-level PixelData element."""
    if tag_offset + 12 > len(data):
        return None
    group, element = struct.unpack_from("<HH", data, tag_offset)
    if (group << 16 | element) != PIXEL_DATA_TAG:
        return None
    if implicit:
        return tag_offset + 8, struct.unpack_from("<I", data, tag_offset + 4)[0]
    return tag_offset + 12, struct.unpack_from("<I", data, tag_offset + 8)[0]


def _native_spans(ds: Dataset, start: int, length: int, count: int) -> list[list[Span]] | None:
    bits = int(ds.get("BitsAllocated", 0))
    if bits % 8:
        return None
    samples = int(ds.get("SamplesPerPixel", 1))
    size = int(ds.Rows) * int(ds.Columns) * samples * bits // 8
    if size == 0 or size * count > length:
        return None
    return [[(start + k * size, start + (k + 1) * size)] for k in range(count)]


def _encapsulated_spans(data: bytes, start: int, count: int) -> list[list[Span]] | None:
    items = _items(data, start)
    if len(items) < 2:
        return None
    basic, fragments = items[0], items[1:]
    if len(fragments) == count:
        return [[fragment] for fragment in fragments]
    offsets = [o for (o,) in struct.iter_unpack("<I", data[basic[0] : basic[1]])]
    if len(offsets) != count:
        return None
    first_item = fragments[0][0] - 8
    starts = [first_item + offset for offset in offsets] + [len(data)]
    return [[f for f in fragments if starts[k] <= f[0] - 8 < starts[k + 1]] for k in range(count)]


def _items(data: bytes, position: int) -> list[Span]:
    """Return the value spans of the items of an encapsulated PixelData value."""
    items: list[Span] = []
    while position + 8 <= len(data):
        group, element, length = struct.unpack_from("<HHI", data, position)
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER:
            return items
        if tag != ITEM or position + 8 + length > len(data):
            return []
        items.append((position + 8, position + 8 + length))
        position += 8 + length
    return []


def attach_offset_tables(record: dict[str, Any], data: bytes, base: int) -> None:
    """Store ``offset_tables`` in an instance record when it has several frames.

    The record's DICOM JSON tells the frame count, so single-frame instances are
    not parsed again.
    """
    if _recorded_frames(record) < 2:
        return
    tables = offset_tables(data, base)
    if tables is not None:
        record["offset_tables"] = tables


def _recorded_frames(record: dict[str, Any]) -> int:
    """NumberOfFrames (0028,0008) from the record's DICOM JSON; 1 when absent or odd."""
    values = record.get("metadata", {}).get("00280008", {}).get("Value") or [1]
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return 1


def read_frame(
    uid: str, tables: dict[str, Any] | None, index: int, read: Callable[[int, int], bytes]
) -> bytes:
    """Return frame ``index`` of instance ``uid`` by ``read(start, end)`` of each span.

    Raises:
        CODNotFoundError: if the instance has no offset tables or no such frame.
    """
    if not tables:  # None, or {} (one frame)
        raise CODNotFoundError(f'Instance "{uid}" has no frame offset tables (one frame?).')
    count = len(tables["CustomOffsetTable"])
    if not 0 <= index < count:
        raise CODNotFoundError(f'Instance "{uid}" has {count} frames; frame {index} requested.')
    return b"".join(read(start, end) for start, end in table_spans(tables, index))
