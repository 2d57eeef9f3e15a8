"""Pixel data for WADO-RS: frame bytes and their media types.

Frames are read through the archive's offset tables (one ranged read per frame)
when the instance has them; otherwise (one frame, big endian, deflated) the
instance is read whole and its frames taken out with pydicom. Frames asked as
native pixels of a compressed instance are decoded with pydicom (pylibjpeg), and
instances converted to an uncompressed syntax (big-endian pixel data swapped).
"""

import io
from typing import Any

import numpy as np
from fastapi import HTTPException, status
from pydicom import Dataset, dcmread, dcmwrite
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from dicomflow.cod.query import ArchiveReader, SeriesDocument
from dicomflow.dicom.decoding import decoder_failures_unlogged, one_line
from dicomflow.errors import CODError, CODNotFoundError
from dicomflow.web.dicomweb.resources import read_instance

OCTET_STREAM = "application/octet-stream"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.100": "video/mpeg2",
    "1.2.840.10008.1.2.4.101": "video/mpeg2",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
}


def transfer_syntax_of(metadata: dict[str, Any]) -> str:
    """The stored transfer syntax of an instance (from its DICOM JSON file meta)."""
    values = metadata.get("00020010", {}).get("Value") or [IMPLICIT_LITTLE]
    return str(values[0])


def is_native(syntax: str) -> bool:
    """Whether pixel data in ``syntax`` is native (not encapsulated)."""
    return not UID(syntax).is_encapsulated


def frame_media_type(syntax: str) -> str:
    """The media type of frames stored in ``syntax``."""
    return OCTET_STREAM if is_native(syntax) else FRAME_MEDIA_TYPES.get(syntax, OCTET_STREAM)


def read_frames(
    reader: ArchiveReader, document: SeriesDocument, uid: str, numbers: list[int]
) -> list[bytes]:
    """The bytes of frames ``numbers`` (from 1) of an instance; 406 if they cannot be cut."""
    record = document.instances[uid]
    if record.get("offset_tables"):
        try:
            return [reader.frame_bytes(document, uid, n - 1) for n in numbers]
        except CODNotFoundError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    ds = dcmread(io.BytesIO(read_instance(reader, document, uid)))
    try:
        every = _frames_of(ds)
    except (CODError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE, f'Frames of instance "{uid}" cannot be served: {exc}'
        ) from None
    return [every[n - 1] for n in numbers]


def _frames_of(ds: Dataset) -> list[bytes]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax.is_encapsulated:
        return list(generate_frames(ds.PixelData, number_of_frames=count))
    bits = int(ds.BitsAllocated)
    data = bytes(ds.PixelData)
    if bits % 8:
        if count > 1:
            raise CODError(f"{count} frames of {bits}-bit pixels are not split")
        return [data]
    if not syntax.is_little_endian:
        data = _swapped(data, bits)
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    return [data[k * size : (k + 1) * size] for k in range(count)]


def decoded_frames(data: bytes, uid: str, numbers: list[int]) -> list[bytes]:
    """Frames ``numbers`` (from 1) of a Part-10 instance decoded to native little-endian
    pixels (colour as RGB, interleaved); 406 when they cannot be decoded here."""
    dataset = dcmread(io.BytesIO(data))
    try:
        if int(dataset.BitsAllocated) % 8:
            raise CODError(f"BitsAllocated {dataset.BitsAllocated} is not whole bytes")
        with decoder_failures_unlogged():
            return [_native_bytes(pixel_array(dataset, index=n - 1)) for n in numbers]
    except Exception as exc:  # any decoder failure: the frames cannot be served decoded
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            f'Frames of instance "{uid}" cannot be decoded ({one_line(exc)}); ask for them'
            " with transfer-syntax=* to get them as stored.",
        ) from None


def _native_bytes(pixels: np.ndarray[Any, Any]) -> bytes:
    return pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()


def _swapped(data: bytes, bits: int) -> bytes:
    """Big-endian pixel data of ``bits``-bit samples in little-endian byte order."""
    if bits <= 8 or bits % 8:
        return data
    dtype = np.dtype(f">u{bits // 8}")
    return np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("<")).tobytes()


def convert_instance(data: bytes, syntax: str) -> bytes:
    """A Part-10 instance re-encoded in ``syntax`` (explicit or implicit VR little
    endian), its pixel data decoded if it was compressed.

    Raises:
        HTTPException: 406 when the pixel data cannot be decoded here.
    """
    dataset = dcmread(io.BytesIO(data))
    if str(dataset.file_meta.TransferSyntaxUID) == syntax:
        return data
    try:
        stored = dataset.file_meta.TransferSyntaxUID
        if stored.is_compressed:
            with decoder_failures_unlogged():
                dataset.decompress(generate_instance_uid=False)  # the same instance
        elif not stored.is_little_endian and "PixelData" in dataset:
            dataset.PixelData = _swapped(dataset.PixelData, int(dataset.BitsAllocated))
        dataset.file_meta.TransferSyntaxUID = UID(syntax)
        stream = io.BytesIO()
        dcmwrite(
            stream,
            dataset,
            implicit_vr=UID(syntax).is_implicit_VR,
            little_endian=True,
            enforce_file_format=True,
        )
    except Exception as exc:
        uid = dataset.get("SOPInstanceUID", "?")
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            f"Instance {uid} cannot be converted to {syntax} ({one_line(exc)}); ask for it"
            " with transfer-syntax=* to get it as stored.",
        ) from None
    return stream.getvalue()
