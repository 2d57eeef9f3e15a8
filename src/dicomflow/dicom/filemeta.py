"""Part-10 file meta information, encoded directly.

The SCP writes every received instance as a Part-10 file: preamble, ``DICM``,
the group 0002 elements below, then the dataset bytes exactly as received.
Building a pydicom ``FileMetaDataset`` for that costs more than receiving a
small instance, so the few elements are packed here (explicit VR little
endian, as PS3.10 requires).
"""

import struct

from pydicom import Dataset
from pydicom.dataset import validate_file_meta
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from dicomflow.dicom.uid import gen_uid
from dicomflow.errors import InvalidDataset

PREAMBLE = b"\x00" * 128 + b"DICM"
IMPLEMENTATION_VERSION_NAME = "DICOMFLOW_010"
_EXPLICIT_BIG_ENDIAN = "1.2.840.10008.1.2.2"


def encode_file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and file meta elements for one instance."""
    body = b"".join(
        (
            struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
            _short(0x0002, "UI", _uid(sop_class_uid)),
            _short(0x0003, "UI", _uid(sop_instance_uid)),
            _short(0x0010, "UI", _uid(transfer_syntax)),
            _short(0x0012, "UI", _uid(PYDICOM_IMPLEMENTATION_UID)),
            _short(0x0013, "SH", _text(IMPLEMENTATION_VERSION_NAME)),
        )
    )
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + length + body


def _short(element: int, vr: str, value: bytes) -> bytes:
    return struct.pack("<HH2sH", 0x0002, element, vr.encode(), len(value)) + value


def _uid(value: str) -> bytes:
    data = str(value).strip("\x00 ").encode("ascii", "replace")
    return data + b"\x00" if len(data) % 2 else data


def _text(value: str) -> bytes:
    data = value.encode("ascii")
    return data + b" " if len(data) % 2 else data


def make_meta(dataset: Dataset) -> None:
    """Complete ``dataset.file_meta`` so the dataset can be written as a Part-10 file.

    A missing SOPInstanceUID is generated. File meta elements already present
    are kept; missing ones are filled from the dataset, with Explicit VR Little
    Endian as the transfer syntax.

    Raises:
        InvalidDataset: if the dataset has no SOPClassUID, its transfer syntax
            is the retired Explicit VR Big Endian, or the file meta is invalid.
    """
    if "SOPClassUID" not in dataset:
        raise InvalidDataset("Cannot make file meta: the dataset has no SOPClassUID.")
    if "SOPInstanceUID" not in dataset:
        dataset.SOPInstanceUID = gen_uid()
    dataset.ensure_file_meta()
    meta = dataset.file_meta
    defaults = (
        ("FileMetaInformationVersion", b"\x00\x01"),
        ("MediaStorageSOPClassUID", dataset.SOPClassUID),
        ("MediaStorageSOPInstanceUID", dataset.SOPInstanceUID),
        ("TransferSyntaxUID", ExplicitVRLittleEndian),
        ("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID),
        ("ImplementationVersionName", IMPLEMENTATION_VERSION_NAME),
    )
    for keyword, value in defaults:
        if keyword not in meta:
            setattr(meta, keyword, value)
    if meta.TransferSyntaxUID == _EXPLICIT_BIG_ENDIAN:
        raise InvalidDataset(
            f"Cannot make file meta: transfer syntax {_EXPLICIT_BIG_ENDIAN} "
            "(Explicit VR Big Endian, retired) is not supported."
        )
    try:
        validate_file_meta(meta)
    except (ValueError, AttributeError) as exc:
        raise InvalidDataset(f"Cannot make file meta: {exc}") from exc
