"""CRC32C checksums in the datastore's format (base64 of the big-endian value)."""

import base64
from typing import BinaryIO

import crc32c as _crc32c


def checksum(data: bytes) -> str:
    """Return the CRC32C of ``data`` as base64 of its 4 big-endian bytes."""
    value = _crc32c.crc32c(data)
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def file_checksum(file: BinaryIO, blocksize: int = 2**20) -> str:
    """Return the CRC32C of the rest of ``file``, read ``blocksize`` bytes at a time."""
    value = 0
    while block := file.read(blocksize):
        value = _crc32c.crc32c(block, value)
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")
