"""Whether an encoded dataset is whole: every element's value is all there.

pydicom reads leniently: a value cut short by the end of the data, or an
element whose length runs past the end, comes back short without an error. A
node must not acknowledge (and store) such an instance, so the SCP checks the
encoding before it accepts an instance.
"""

import functools
import struct
import zlib
from collections.abc import MutableSequence
from io import BytesIO
from typing import cast

from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from pydicom.values import convert_string

from dicomflow.errors import DicomflowError

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM_DELIMITER = 0xFFFEE00D
SPECIFIC_CHARACTER_SET = 0x00080005
_IMPLICIT = struct.Struct("<HHL")
_EXPLICIT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")
_VR_NAMES = {str(vr).encode(): str(vr) for vr in VR if len(str(vr)) == 2}
_LONG_VRS = frozenset(str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32)


class TruncatedDatasetError(DicomflowError, ValueError):
    """An encoded dataset ends in the middle of a data element."""


def decode_complete(data: bytes, transfer_syntax: UID) -> Dataset:
    """Decode ``data`` into a dataset in one pass, checking that every element is whole.

    The elements stay raw (decoded by pydicom on first access), as when pydicom
    reads a file.

    Raises:
        TruncatedDatasetError: naming the element whose value is incomplete.
        EOFError, OSError, zlib.error: if pydicom or zlib cannot read ``data`` at all.
    """
    if transfer_syntax.is_deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    implicit, little = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    if little:
        elements, end = _scan_little_endian(data, implicit)
    else:
        elements, end = {}, 0
        stream = BytesIO(data)
        for element in data_element_generator(stream, implicit, little, defer_size=None):
            if isinstance(element, RawDataElement):
                _check_length(element)
            elements[element.tag] = element
            end = stream.tell()
    if end != len(data):
        raise TruncatedDatasetError(
            f"The last {len(data) - end} byte(s) do not form a whole data element."
        )
    dataset = Dataset(elements)
    dataset.set_original_encoding(implicit, little, dataset._character_set)
    return dataset


def decode_part10(data: bytes) -> Dataset:
    """Decode a Part-10 file held in memory (preamble, ``DICM``, file meta, dataset),
    checking that the dataset is whole as :func:`decode_complete` does.

    Raises:
        InvalidDicomError: if ``data`` does not start like a Part-10 file.
        TruncatedDatasetError, EOFError, OSError, ValueError: if the rest cannot be read.
    """
    stream = BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    syntax = meta.get("TransferSyntaxUID")
    if syntax is None:
        raise TruncatedDatasetError("The file meta information has no TransferSyntaxUID.")
    dataset = decode_complete(data[stream.tell() :], UID(syntax))
    dataset.file_meta = meta
    return dataset


def _scan_little_endian(
    data: bytes, implicit: bool
) -> tuple[dict[BaseTag, RawDataElement | DataElement], int]:
    """The top-level elements of a little-endian dataset and where the last one ends.

    The same elements pydicom's ``data_element_generator`` yields, several times
    faster: an element of defined length with a known VR is sliced out of
    ``data`` here; anything else (undefined length, an unknown VR, a header cut
    short) is read by pydicom from that offset.
    """
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    size = len(data)
    offset = 0
    stream: BytesIO | None = None
    encoding: str | MutableSequence[str] = default_encoding
    while size - offset >= 8:
        vr: str | None = None
        if implicit:
            group, number, length = _IMPLICIT.unpack_from(data, offset)
            value_at = offset + 8
        else:
            group, number, vr_bytes, length = _EXPLICIT.unpack_from(data, offset)
            vr = _VR_NAMES.get(vr_bytes)
            value_at = offset + 8
            if vr_bytes in _LONG_VRS:
                if size - offset < 12:
                    vr = None  # let pydicom fail on the cut-short header
                else:
                    (length,) = _LONG_LENGTH.unpack_from(data, value_at)
                    value_at += 4
        tag = group << 16 | number
        if tag == ITEM_DELIMITER:
            break
        if (vr is None and not implicit) or length == UNDEFINED_LENGTH:
            if stream is None:
                stream = BytesIO(data)
            stream.seek(offset)
            generator = data_element_generator(
                stream, implicit, True, defer_size=None, encoding=encoding
            )
            element = next(generator, None)
            if element is None:
                break
            if isinstance(element, RawDataElement):
                _check_length(element)
            elements[element.tag] = element
            offset = stream.tell()
            continue
        end = value_at + length
        if end > size:
            raise TruncatedDatasetError(
                f"Element {BaseTag(tag)} declares {length} bytes; only {size - value_at} follow."
            )
        value = data[value_at:end] if length else _empty_value(vr)
        if tag == SPECIFIC_CHARACTER_SET:
            encoding = convert_encodings(convert_string(value or b"", True))
        key = BaseTag(tag)
        elements[key] = RawDataElement(key, vr, length, value, value_at, implicit, True)
        offset = end
    return elements, offset


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
