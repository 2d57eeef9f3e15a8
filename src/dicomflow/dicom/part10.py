"""Part-10 files read directly: the file meta, where the dataset starts, the SOP UIDs.

Sending a file needs its transfer syntax and SOP UIDs before the association,
and its dataset bytes as they are: decoding it with pydicom for that costs more
than sending it. Everything here walks the elements with :func:`walk`, the one
reader of element headers, and :data:`LONG_VRS`, the one table of VRs with a
4-byte length (PS3.5 7.1.2). A file this reader does not take (no file meta
group length, say) is read by pydicom (:func:`read_with_pydicom`); so is the
file meta of an upload, which must be whole (:func:`decode_file_meta`).
"""

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
"""Explicit VRs whose length takes 4 bytes after 2 reserved ones (PS3.5 Table 7.1-1)."""
UNDEFINED_LENGTH = 0xFFFFFFFF
HEAD_BYTES = 4096
"""What is read of a file to find its file meta and the SOP UIDs at its dataset's start."""
_PREFIX = 132  # preamble and "DICM"
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL"
_LITTLE_ENDIAN = struct.Struct("<HH"), struct.Struct("<H"), struct.Struct("<I")
_BIG_ENDIAN = struct.Struct(">HH"), struct.Struct(">H"), struct.Struct(">I")


class Element(NamedTuple):
    """One element's header: its tag, VR (empty when implicit), length, and where its
    value starts."""

    group: int
    number: int
    vr: bytes
    length: int
    value_at: int

    @property
    def end(self) -> int:
        """Where the next element starts (past the end for an undefined length)."""
        return self.value_at + self.length


@dataclass(frozen=True)
class FileMeta:
    """What a Part-10 file's meta group says, and where its dataset starts (which may lie
    beyond the bytes read)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    dataset_offset: int


def walk(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    limit: int | None = None,
    *,
    implicit: bool = False,
    big_endian: bool = False,
) -> Iterator[Element]:
    """The element headers of ``data`` from ``offset``, one after the other, as long as a
    whole 8-byte header starts before ``limit`` (the end of ``data`` by default).

    Values are skipped, not read: the items of a sequence are not entered, and an
    undefined length ends the walk at the next step.

    Raises:
        struct.error: where a long VR's 4-byte length is cut short.
    """
    end = len(data) if limit is None else limit
    tag, short, long = _BIG_ENDIAN if big_endian else _LITTLE_ENDIAN
    while offset + 8 <= end:
        group, number = tag.unpack_from(data, offset)
        if implicit:
            vr = b""
            (length,) = long.unpack_from(data, offset + 4)
            value_at = offset + 8
        else:
            vr = bytes(data[offset + 4 : offset + 6])
            if vr in LONG_VRS:
                (length,) = long.unpack_from(data, offset + 8)
                value_at = offset + 12
            else:
                (length,) = short.unpack_from(data, offset + 6)
                value_at = offset + 8
        yield Element(group, number, vr, length, value_at)
        offset = value_at + length


def file_meta(data: bytes | bytearray) -> FileMeta:
    """The file meta of the Part-10 file starting ``data`` (which may hold only its head).

    Raises:
        ValueError: if ``data`` is not a Part-10 file with a file meta group length, the
            file meta is cut short, or it has no MediaStorageSOPClassUID or
            TransferSyntaxUID.
    """
    meta, end = _file_meta(data)
    if 0x0002 not in meta or 0x0010 not in meta:
        if end > len(data):
            raise ValueError("the file meta is cut short")
        raise ValueError("the file meta has no MediaStorageSOPClassUID or TransferSyntaxUID")
    return FileMeta(meta[0x0002], meta.get(0x0003, ""), meta[0x0010], end)


def _file_meta(data: bytes | bytearray) -> tuple[dict[int, str], int]:
    """The UIDs of a Part-10 file's meta group, and where its dataset starts.

    The offset may lie beyond ``data`` when only the head was read.
    """
    try:
        return _parse_file_meta(data)
    except struct.error as exc:
        raise ValueError("the file meta is cut short") from exc


def _parse_file_meta(data: bytes | bytearray) -> tuple[dict[int, str], int]:
    if data[128:_PREFIX] != b"DICM":
        raise ValueError("not a DICOM Part-10 file (no DICM prefix)")
    if data[_PREFIX : _PREFIX + 6] != _META_GROUP_LENGTH:
        raise ValueError("the file meta has no group length")
    (length,) = struct.unpack_from("<I", data, _PREFIX + 8)
    offset = _PREFIX + 12
    end = offset + length
    meta: dict[int, str] = {}
    for element in walk(data, offset, min(end, len(data))):
        if element.group != 0x0002:
            raise ValueError("the file meta group length is wrong")
        if element.number in (0x0002, 0x0003, 0x0010) and element.end <= len(data):
            value = bytes(data[element.value_at : element.end]).decode("ascii")
            meta[element.number] = value.rstrip("\x00 ")
        offset = element.end
    if offset >= end and (0x0002 not in meta or 0x0010 not in meta):
        raise ValueError("the file meta has no MediaStorageSOPClassUID or TransferSyntaxUID")
    return meta, end


def decode_file_meta(data: bytes) -> tuple[FileMetaDataset, int]:
    """The file meta information of a Part-10 file held in memory, and where it ends.

    Raises:
        InvalidDicomError: if ``data`` does not start like a Part-10 file.
        EOFError, OSError, ValueError: if the file meta cannot be read.
    """
    stream = BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    return meta, stream.tell()


def read_head(path: Path, head_bytes: int = HEAD_BYTES) -> tuple[FileMeta, bytes]:
    """A Part-10 file's meta, and the bytes read: the first ``head_bytes``, or a longer
    file meta and ``head_bytes`` more.

    Raises:
        ValueError: where the file has no file meta :func:`file_meta` takes.
    """
    with path.open("rb") as file:
        head = file.read(head_bytes)
        _, end = _file_meta(head)
        if end > len(head):
            head += file.read(end - len(head) + head_bytes)
    return file_meta(head), head


def dataset_sop_uids(data: bytes | memoryview, syntax: str) -> tuple[str, str]:
    """SOPClassUID (0008,0016) and SOPInstanceUID (0008,0018), read from the start of a
    dataset encoded in ``syntax``; empty where not found.

    Both empty for a deflated dataset; not found where an element of undefined length
    or the end of ``data`` comes first.
    """
    if syntax == DeflatedExplicitVRLittleEndian:
        return "", ""
    found: dict[int, str] = {}
    implicit, big_endian = syntax == ImplicitVRLittleEndian, syntax == ExplicitVRBigEndian
    try:
        for element in walk(data, implicit=implicit, big_endian=big_endian):
            if (element.group, element.number) > (0x0008, 0x0018):
                break
            if element.length == UNDEFINED_LENGTH:
                break
            wanted = element.group == 0x0008 and element.number in (0x0016, 0x0018)
            if wanted and element.end <= len(data):
                value = bytes(data[element.value_at : element.end]).decode("ascii", "replace")
                found[element.number] = value.rstrip("\x00 ")
                if len(found) == 2:
                    break
    except struct.error:
        pass
    return found.get(0x0016, ""), found.get(0x0018, "")


def sop_uids(meta: FileMeta, dataset: bytes | memoryview) -> tuple[str, str]:
    """The SOP class and instance UIDs of a file: its dataset's, else its file meta's.

    (A peer checks a C-STORE's UIDs against the dataset's, which the file meta does
    not always repeat faithfully.)

    Raises:
        ValueError: if neither has a SOPInstanceUID.
    """
    sop_class, sop_instance = dataset_sop_uids(dataset, meta.transfer_syntax)
    sop_instance = sop_instance or meta.sop_instance_uid
    if not sop_instance:
        raise ValueError("neither the dataset nor the file meta has a SOPInstanceUID")
    return sop_class or meta.sop_class_uid, sop_instance


def sop_class_and_syntax(path: Path) -> tuple[str, str]:
    """A Part-10 file's SOP class UID (its dataset's, else its file meta's) and transfer
    syntax, read from its head (by pydicom where :func:`read_head` does not take it).

    Raises:
        ValueError, OSError: if the file cannot be read as DICOM.
    """
    try:
        meta, head = read_head(path)
    except ValueError:
        return dataset_sop_class_and_syntax(read_with_pydicom(path))
    sop_class, _ = dataset_sop_uids(memoryview(head)[meta.dataset_offset :], meta.transfer_syntax)
    return sop_class or meta.sop_class_uid, meta.transfer_syntax


def dataset_sop_class_and_syntax(dataset: Dataset) -> tuple[str, str]:
    """A dataset's SOP class UID (else its file meta's) and its file meta's transfer syntax
    (explicit VR little endian without one).

    Raises:
        ValueError: if neither the dataset nor its file meta has a SOPClassUID.
    """
    file_meta = getattr(dataset, "file_meta", None)
    syntax = getattr(file_meta, "TransferSyntaxUID", None) or ExplicitVRLittleEndian
    return dataset_uid(dataset, "SOPClassUID"), str(syntax)


def dataset_uid(dataset: Dataset, keyword: str) -> str:
    """``SOPClassUID`` or ``SOPInstanceUID`` of a dataset, else of its file meta.

    Raises:
        ValueError: if neither has it.
    """
    file_meta = getattr(dataset, "file_meta", None)
    value = dataset.get(keyword) or getattr(file_meta, f"MediaStorage{keyword}", None)
    if not value:
        raise ValueError(f"the dataset has no {keyword}")
    return str(value)


def read_with_pydicom(path: Path) -> Dataset:
    """A file :func:`file_meta` does not take (no file meta group length, say), as
    pydicom reads it.

    Raises:
        ValueError: if pydicom cannot read it either.
    """
    try:
        return dcmread(path)
    except Exception as exc:  # pydicom raises many kinds on files it cannot read
        raise ValueError(f"not a readable DICOM file: {exc}") from exc
