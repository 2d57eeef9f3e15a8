"""The series tar: append members in place and read one member by byte range.

Members are written as USTAR headers (512 bytes) followed by the data padded
to 512 bytes; the archive ends with two zero blocks. Appending starts at the
end of the last *committed* member (from the metadata), overwriting the end
marker and any bytes left by a sync that failed before its metadata was
written, and never touches committed bytes. Byte ranges are half-open:
``end_byte`` is exclusive, as in ``fs.cat_file(path, start, end)``.
"""

import os
import tarfile
import time

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from dicomflow.errors import CODError

BLOCK = 512
END_MARKER = b"\0" * (2 * BLOCK)


def padded(size: int) -> int:
    """Return ``size`` rounded up to a whole number of tar blocks."""
    return -(-size // BLOCK) * BLOCK


def _member_parts(name: str, data: bytes) -> tuple[bytes, bytes, bytes]:
    """The member's header, data and padding (written separately: no copy of the data)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    header = info.tobuf(format=tarfile.USTAR_FORMAT)
    return header, data, b"\0" * (padded(len(data)) - len(data))


def append_members(
    fs: AbstractFileSystem, path: str, offset: int, members: list[tuple[str, bytes]]
) -> list[tuple[int, int]]:
    """Write ``members`` (name, data) into the tar at ``path`` from byte ``offset``.

    ``offset`` is the end of the committed members (0 for a new tar). Returns
    each member's data range as (start_byte, end_byte exclusive).
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
    exists = fs.exists(path)
    if offset > 0 and not exists:
        raise CODError(f'Series tar "{path}" is missing; its metadata lists members.')
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    mode = "r+b" if exists else "wb"
    with fs.open(path, mode) as file:
        file.seek(offset)
        for part in parts:
            file.write(part)
    return ranges


def read_range(fs: AbstractFileSystem, path: str, start: int, end: int) -> bytes:
    """Return bytes ``[start, end)`` of the tar at ``path``."""
    if isinstance(fs, LocalFileSystem):  # one pread, without fsspec's buffered file
        with open(path, "rb", buffering=0) as file:
            return os.pread(file.fileno(), end - start, start)
    data: bytes = fs.cat_file(path, start=start, end=end)
    return data
