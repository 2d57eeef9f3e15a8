"""Part-10 bytes made fit for a presentation context: the dataset as stored when the
peer accepted its transfer syntax, else re-encoded in an uncompressed one (its pixel
data decoded first by pydicom and pylibjpeg), for a C-STORE sub-operation of a C-GET.

The instance is decoded only when its own syntax was not accepted: an archived
instance otherwise goes out as the bytes read.
"""

import logging
from io import BytesIO

from pydicom import dcmread
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import encode

from dicomflow.dicom import part10
from dicomflow.errors import TranscodeError

logger = logging.getLogger(__name__)

TARGETS = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
"""What an instance in a syntax the peer did not accept is re-encoded in, by preference."""
PLAIN = frozenset(
    str(uid)
    for uid in (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    )
)
"""Syntaxes pydicom reads and writes without a codec."""


def dataset_of(data: bytes) -> tuple[str, memoryview]:
    """The transfer syntax of Part-10 ``data`` and its dataset's bytes (no copy).

    Raises:
        ValueError: if ``data`` is not a Part-10 file with a dataset.
    """
    meta = part10.file_meta(data)
    if meta.dataset_offset >= len(data):
        raise ValueError("the file has no dataset after its file meta")
    view = memoryview(data)[meta.dataset_offset :]
    if meta.transfer_syntax == DeflatedExplicitVRLittleEndian and len(view) % 2:
        return meta.transfer_syntax, memoryview(bytes(view) + b"\x00")  # PS3.5 A.5: even
    return meta.transfer_syntax, view


def fitted(data: bytes, accepted: dict[str, int]) -> tuple[int, bytes | memoryview]:
    """The context (of ``accepted``: syntax -> context id) and dataset bytes to send
    Part-10 ``data`` with.

    Raises:
        TranscodeError: if no accepted syntax fits and the pixel data cannot be decoded.
        ValueError: if ``data`` is not Part-10, or nothing accepted can carry it.
    """
    syntax, dataset = dataset_of(data)
    if syntax in accepted:
        return accepted[syntax], dataset
    target = next((candidate for candidate in TARGETS if candidate in accepted), None)
    if target is None:
        offered = ", ".join(UID(s).name for s in accepted) or "nothing"
        raise ValueError(f"the peer accepts {offered}, not {UID(syntax).name}")
    return accepted[target], reencoded(data, syntax, target)


def reencoded(data: bytes, syntax: str, target: str) -> bytes:
    """The dataset of Part-10 ``data`` (in ``syntax``) encoded in uncompressed ``target``."""
    dataset = dcmread(BytesIO(data), force=True)
    if syntax not in PLAIN:
        try:
            dataset.decompress(generate_instance_uid=False)
        except Exception as exc:  # each decoder raises its own kinds
            raise TranscodeError(
                f"the peer accepts only uncompressed syntaxes and the pixel data in"
                f" {UID(syntax).name} cannot be decoded ({exc})"
            ) from exc
    encoded = encode(dataset, target == ImplicitVRLittleEndian, True)
    if encoded is None:
        raise ValueError(f"the dataset cannot be encoded in {UID(target).name}")
    logger.debug("instance re-encoded from %s to %s", UID(syntax).name, UID(target).name)
    return encoded
