"""Whether an encoded dataset is whole: every element's value is all there.

pydicom reads leniently: a value cut short by the end of the data, or an
element whose length runs past the end, comes back short without an error. A
node must not acknowledge (and store) such an instance, so the SCP checks the
encoding before it accepts an instance.

Decoding costs little memory beyond the encoded data: a binary value (OB, OW,
OF, OD, OL, OV; pixel data, encapsulated or not) longer than
:data:`SHARED_VALUE_BYTES` is a ``memoryview`` into the data, not a copy; any
other long value is copied only once ``reserve`` (the receiver's memory
budget) has room for it. A deflated dataset is inflated in bounded steps
(:mod:`dicomflow.dicom.inflate`).
"""

import functools
import struct
from collections.abc import MutableSequence
from typing import BinaryIO, cast

from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.filereader import data_element_generator
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import VR
from pydicom.values import convert_string

from dicomflow.dicom.inflate import Buffer, Reserve, inflate, unlimited
from dicomflow.dicom.part10 import LONG_VRS, UNDEFINED_LENGTH, decode_file_meta
from dicomflow.dicom.view import ViewReader
from dicomflow.errors import InstanceTooLargeError, TruncatedDatasetError

ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
DEFAULT_MAXIMUM_BYTES = 4 << 30
SHARED_VALUE_BYTES = 64 * 1024
BINARY_VRS = frozenset(("OB", "OD", "OF", "OL", "OV", "OW", "OB or OW"))
SPECIFIC_CHARACTER_SET = 0x00080005
_IMPLICIT = struct.Struct("<HHL")
_EXPLICIT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")
_VR_NAMES = {str(vr).encode(): str(vr) for vr in VR if len(str(vr)) == 2}


def decode_complete(
    data: Buffer,
    transfer_syntax: UID,
    *,
    maximum_bytes: int = DEFAULT_MAXIMUM_BYTES,
    reserve: Reserve = unlimited,
) -> Dataset:
    """Decode ``data`` into a dataset in one pass, checking that every element is whole.

    The elements stay raw (decoded by pydicom on first access), as when pydicom
    reads a file. A deflated dataset may inflate to ``maximum_bytes``; ``reserve``
    is asked for the memory of inflated data and of long values that are copied.

    Raises:
        TruncatedDatasetError: naming the element whose value is incomplete.
        InstanceTooLargeError: past ``maximum_bytes`` or what ``reserve`` allows.
        EOFError, OSError, zlib.error: if pydicom or zlib cannot read ``data`` at all.
    """
    if transfer_syntax.is_deflated:
        data = inflate(data, maximum_bytes, reserve)
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    view = memoryview(data)
    if little:
        elements, end = _scan_little_endian(view, implicit, reserve)
    else:
        elements, end = {}, 0
        stream = ViewReader(view)
        for element in data_element_generator(
            cast(BinaryIO, stream), implicit, little, defer_size=None
        ):
            if isinstance(element, RawDataElement):
                _check_length(element)
            elements[element.tag] = element
            end = stream.tell()
    if end != len(view):
        raise TruncatedDatasetError(
            f"The last {len(view) - end} byte(s) do not form a whole data element."
        )
    dataset = Dataset(elements)
    dataset.set_original_encoding(implicit, little, dataset._character_set)
    return dataset


def decode_part10(data: bytes, *, maximum_bytes: int = DEFAULT_MAXIMUM_BYTES) -> Dataset:
    """Decode a Part-10 file held in memory (preamble, ``DICM``, file meta, dataset),
    checking that the dataset is whole as :func:`decode_complete` does (a deflated
    one may inflate to ``maximum_bytes``).

    Raises:
        InvalidDicomError: if ``data`` does not start like a Part-10 file.
        TruncatedDatasetError, EOFError, OSError, ValueError: if the rest cannot be read.
    """
    meta, end = decode_file_meta(data)
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None:
        raise TruncatedDatasetError("The file meta information has no TransferSyntaxUID.")
    rest = memoryview(data)[end:]
    dataset = decode_complete(rest, UID(syntax), maximum_bytes=maximum_bytes)
    dataset.file_meta = meta
    return dataset


def _scan_little_endian(
    view: memoryview, implicit: bool, reserve: Reserve
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int]:
    """The top-level elements of a little-endian dataset and where the last one ends.

    The same elements pydicom's ``data_element_generator`` yields, several times
    faster: an element of defined length with a known VR (and encapsulated pixel
    data) is taken from ``view`` here; anything else (undefined length, an
    unknown VR, a header cut short) is read by pydicom from that offset.
    """
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    size = len(view)
    offset = 0
    stream: ViewReader | None = None
    encoding: str | MutableSequence[str] = default_encoding
    while size - offset >= 8:
        vr: str | None = None
        if implicit:
            group, number, length = _IMPLICIT.unpack_from(view, offset)
            value_at = offset + 8
        else:
            group, number, vr_bytes, length = _EXPLICIT.unpack_from(view, offset)
            vr = _VR_NAMES.get(vr_bytes)
            value_at = offset + 8
            if vr_bytes in LONG_VRS:
                if size - offset < 12:
                    vr = None  # let pydicom fail on the cut-short header
                else:
                    (length,) = _LONG_LENGTH.unpack_from(view, value_at)
                    value_at += 4
        tag = group << 16 | number
        if tag == ITEM_DELIMITER:
            break
        if tag == PIXEL_DATA and length == UNDEFINED_LENGTH and (implicit or vr is not None):
            found = _encapsulated(view, value_at)
            if found is not None:
                key = _tag(tag)
                pixels = cast(bytes, view[value_at : found[0]])  # shared, not copied
                elements[key] = RawDataElement(key, vr, length, pixels, value_at, implicit, True)
                offset = found[1]
                continue
        if (vr is None and not implicit) or length == UNDEFINED_LENGTH:
            if stream is None:
                stream = ViewReader(view)
            element, offset = _read_with_pydicom(stream, offset, implicit, encoding, reserve)
            if element is None:
                break
            elements[element.tag] = element
            continue
        end = value_at + length
        if end > size:
            raise TruncatedDatasetError(
                f"Element {BaseTag(tag)} declares {length} bytes; only {size - value_at} follow."
            )
        value = _value(view, value_at, end, tag, vr, reserve) if length else _empty_value(vr)
        if tag == SPECIFIC_CHARACTER_SET:
            encoding = convert_encodings(convert_string(bytes(value or b""), True))
        key = _tag(tag)
        raw = cast(bytes | None, value)  # pydicom keeps a binary value as given
        elements[key] = RawDataElement(key, vr, length, raw, value_at, implicit, True)
        offset = end
    return elements, offset


def _value(
    view: memoryview, start: int, end: int, tag: int, vr: str | None, reserve: Reserve
) -> bytes | memoryview:
    """An element's value: shared with ``view`` when long and binary, else a copy."""
    if end - start <= SHARED_VALUE_BYTES:
        return view[start:end].tobytes()
    if _binary(tag, vr):
        return view[start:end]
    _reserve(reserve, end - start, tag)
    return view[start:end].tobytes()


def _read_with_pydicom(
    stream: ViewReader,
    offset: int,
    implicit: bool,
    encoding: str | MutableSequence[str],
    reserve: Reserve,
) -> tuple[RawDataElement | DataElement | None, int]:
    """The element at ``offset`` as pydicom reads it (its memory reserved when long)."""
    stream.seek(offset)
    generator = data_element_generator(
        cast(BinaryIO, stream), implicit, True, defer_size=None, encoding=encoding
    )
    element = next(generator, None)
    if element is None:
        return None, offset
    if isinstance(element, RawDataElement):
        _check_length(element)
    end = stream.tell()
    if end - offset > SHARED_VALUE_BYTES:
        _reserve(reserve, end - offset, int(element.tag))
    return element, end


def _encapsulated(view: memoryview, start: int) -> tuple[int, int] | None:
    """Where the items of encapsulated pixel data starting at ``start`` end, and where
    their sequence delimiter ends; None unless they are well formed."""
    offset, size = start, len(view)
    while size - offset >= 8:
        group, number, length = _IMPLICIT.unpack_from(view, offset)
        tag = group << 16 | number
        if tag == SEQUENCE_DELIMITER:
            return offset, offset + 8
        if tag != ITEM or length == UNDEFINED_LENGTH or offset + 8 + length > size:
            return None
        offset += 8 + length
    return None


def _reserve(reserve: Reserve, count: int, tag: int) -> None:
    if not reserve(count):
        raise InstanceTooLargeError(
            f"Decoding element {BaseTag(tag)} ({count} bytes) would pass the memory limit"
            " for instances being received (maximum_held_bytes).",
            "maximum_held_bytes",
        )


@functools.lru_cache(maxsize=4096)
def _tag(tag: int) -> BaseTag:
    """One shared ``BaseTag`` per tag: the headers of waiting instances repeat them."""
    return BaseTag(tag)


@functools.lru_cache(maxsize=1024)
def _binary(tag: int, vr: str | None) -> bool:
    """Whether pydicom keeps the value of this element as bytes (so a view will do)."""
    if vr is not None and vr != "UN":
        return vr in BINARY_VRS
    if BaseTag(tag).is_private:
        return False  # pydicom may look it up in its private dictionary
    try:
        return dictionary_VR(tag) in BINARY_VRS
    except KeyError:
        return False


@functools.cache
def _empty_value(vr: str | None) -> bytes | None:
    """pydicom's raw empty value for ``vr`` (slow to compute, so kept)."""
    return cast(bytes | None, empty_value_for_VR(vr, True))


def _check_length(element: RawDataElement) -> None:
    if element.length == UNDEFINED_LENGTH:
        return
    found = len(element.value or b"")
    if found != element.length:
        raise TruncatedDatasetError(
            f"Element {element.tag} declares {element.length} bytes; only {found} follow."
        )
