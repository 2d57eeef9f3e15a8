"""Stores: how a datastore's objects are read and written, with preconditions where the
backend has them.

Every write names the *generation* of the object it expects to replace (``None``: the
object must not exist yet). A store with real preconditions (:attr:`Store.conditional`)
makes that a condition of the write itself; the others ignore it and rely on the lock
check that precedes every write (see :mod:`dicomflow.cod.locker`).

==============  ==========================================  ==============================
store           appending to a series tar                    preconditions
==============  ==========================================  ==============================
local, memory   in place: the new members are written from   none (the lock file is
                the end of the committed ones                created with ``O_EXCL``)
S3              a multipart upload: the committed bytes by   ``If-None-Match: *`` and
                server-side UploadPartCopy, then the new     ``If-Match: <ETag>`` on every
                members (a tar under 5 MiB is rewritten)     write and delete
any other       the tar is rewritten (committed bytes read   none
                back, new members added)
==============  ==========================================  ==============================

Object stores replace an object atomically, so a reader sees either the old tar or the
new one, and both hold the committed members at the same byte ranges.
"""

import os
import weakref

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from dicomflow.errors import CODError

Generation = str | None
PRESENT = "present"  # the generation of every object of a store without preconditions


class Store:
    """Any fsspec filesystem: no preconditions; appending rewrites the tar."""

    conditional = False

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs

    def read(self, path: str) -> tuple[bytes, Generation]:
        """Return an object's bytes and generation. Raises FileNotFoundError."""
        data: bytes = self.fs.cat_file(path)
        return data, PRESENT

    def generation(self, path: str) -> Generation:
        """Return the object's generation, ``None`` if it does not exist."""
        return PRESENT if self.fs.exists(path) else None

    def create(self, path: str, data: bytes) -> Generation:
        """Write a new object; raise FileExistsError if it exists."""
        self._makedirs(path)
        with self.fs.open(path, "xb") as file:
            file.write(data)
        return PRESENT

    def replace(self, path: str, data: bytes, expected: Generation) -> Generation:
        """Write an object (through a temporary object moved over it)."""
        self._makedirs(path)
        temporary = f"{path}.tmp"
        with self.fs.open(temporary, "wb") as file:
            file.write(data)
        self.fs.mv(temporary, path)
        return PRESENT

    def delete(self, path: str, expected: Generation) -> None:
        """Delete an object."""
        self.fs.rm(path)

    def append(
        self, path: str, offset: int, parts: list[bytes], expected: Generation
    ) -> Generation:
        """Keep bytes ``[0, offset)`` of the object at ``path`` and write ``parts`` after them."""
        _check_append(path, offset, expected)
        kept: bytes = self.fs.cat_file(path, start=0, end=offset) if offset else b""
        self._makedirs(path)
        self.fs.pipe_file(path, kept + b"".join(parts))
        return PRESENT

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Return bytes ``[start, end)`` of the object at ``path``."""
        data: bytes = self.fs.cat_file(path, start=start, end=end)
        return data

    def reopen(self, path: str) -> None:
        """Forget anything kept open for ``path`` (it may have been replaced)."""

    def _makedirs(self, path: str) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)


class FileStore(Store):
    """Local directories and ``memory://``: the tar is appended to in place."""

    def append(
        self, path: str, offset: int, parts: list[bytes], expected: Generation
    ) -> Generation:
        _check_append(path, offset, expected)
        self._makedirs(path)
        with self.fs.open(path, "r+b" if expected is not None else "wb") as file:
            file.seek(offset)
            for part in parts:
                file.write(part)
        return PRESENT

    def __init__(self, fs: AbstractFileSystem) -> None:
        super().__init__(fs)
        self._descriptors: dict[str, int] = {}
        weakref.finalize(self, _close_all, self._descriptors)

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """One ``pread`` on a local tar, kept open for the next reads (appends happen in
        place, so the open file sees them); fsspec's buffered file elsewhere."""
        if not isinstance(self.fs, LocalFileSystem):
            return super().read_range(path, start, end)
        descriptor = self._descriptors.get(path)
        if descriptor is None:
            descriptor = self._descriptors[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return os.pread(descriptor, end - start, start)

    def reopen(self, path: str) -> None:
        descriptor = self._descriptors.pop(path, None)
        if descriptor is not None:
            os.close(descriptor)


def _close_all(descriptors: dict[str, int]) -> None:
    for descriptor in descriptors.values():
        os.close(descriptor)
    descriptors.clear()


def _check_append(path: str, offset: int, expected: Generation) -> None:
    if offset > 0 and expected is None:
        raise CODError(f'Series tar "{path}" is missing; its metadata lists members.')
