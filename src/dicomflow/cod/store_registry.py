"""Which store serves a filesystem, by its fsspec protocol (see :mod:`dicomflow.cod.store`)."""

from typing import Any

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod.s3store import S3Store
from dicomflow.cod.store import FileStore, Store


def _protocols(fs: AbstractFileSystem) -> set[str]:
    protocol: Any = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def open_store(fs: AbstractFileSystem) -> Store:
    """Return the store for ``fs``: S3, in place (local, memory), or rewriting."""
    protocols = _protocols(fs)
    if protocols & {"s3", "s3a"}:
        return S3Store(fs)
    if protocols & {"file", "local", "memory"}:
        return FileStore(fs)
    return Store(fs)
