"""The series tar: members laid out to be appended after the committed ones.

Members are written as USTAR headers (512 bytes) followed by the data padded
to 512 bytes; the archive ends with two zero blocks. Appending starts at the
end of the last *committed* member (from the metadata), overwriting the end
marker and any bytes left by a sync that failed before its metadata was
written, and never touches committed bytes (how the bytes reach the datastore
is the store's business: see :mod:`dicomflow.cod.store`). Byte ranges are
half-open: ``end_byte`` is exclusive, as in ``fs.cat_file(path, start, end)``.
"""

import tarfile
import time

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod.store_registry import open_store

BLOCK = 512
END_MARKER = b"\0" * (2 * BLOCK)


def padded(size: int) -> int:
    """Return ``size`` rounded up to a whole number of tar blocks."""
    return -(-size // BLOCK) * BLOCK


def _member_parts(name: str, data: bytes) -> tuple[bytes, bytes, bytes]:
    """The member's header, data and padding (kept separate: no copy of the data)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    return header, data, b"\0" * (padded(len(data)) - len(data))


def tar_parts(
    offset: int, members: list[tuple[str, bytes]]
) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Lay out ``members`` (name, data) from byte ``offset`` of a tar, end marker included.

    ``offset`` is the end of the committed members (0 for a new tar). Returns the
    bytes to write from ``offset`` (as parts) and each member's data range as
    (start_byte, end_byte exclusive).
    """
    ranges: list[tuple[int, int]] = []
    parts: list[bytes] = []
    position = offset
    for name, data in members:
        header, body, padding = _member_parts(name, data)
        ranges.append((position + len(header), position + len(header) + len(body)))
        parts += [header, body, padding]
        position += len(header) + len(body) + len(padding)
    parts.append(END_MARKER)
    return parts, ranges


def read_range(fs: AbstractFileSystem, path: str, start: int, end: int) -> bytes:
    """Return bytes ``[start, end)`` of the tar at ``path`` (one pread on a local disk)."""
    return open_store(fs).read_range(path, start, end)
