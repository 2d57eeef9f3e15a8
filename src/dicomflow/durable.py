"""Durable files: what survives a crash once these return, and private directories.

A new file is durable once its bytes are flushed (``fsync``) *and* the directory
holding its name is flushed after the file was created or renamed into it: without
the second flush a crash can lose the name. A file replaced in place is written
beside it, flushed, then renamed over it (:func:`write_then_rename`), so that a
reader sees the old file or the new one, never half of one. Directories holding
patient data are made readable by the node's user alone (0700, files 0600).
"""

import ctypes
import ctypes.util
import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview
Encoded = Buffer | tuple[Buffer, ...]  # a file's bytes, whole or in parts (not joined)


def write_durably(path: Path, data: Encoded, *, fsync: bool = True) -> None:
    """Write ``data`` (whole or in parts, never joined) to ``path`` (mode 0600) and
    (optionally) fsync it. The directory is not flushed."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for part in data if isinstance(data, tuple) else (data,):
            view = memoryview(part)
            while view:
                written = os.write(descriptor, view)
                view = view[written:]
        if fsync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_then_rename(
    path: Path, data: Encoded, *, temporary: Path | None = None, sync_directory: bool = True
) -> None:
    """Replace ``path`` by a file holding ``data``: written and flushed at ``temporary``
    (``{name}.part`` beside it by default), renamed over ``path``, then (with
    ``sync_directory``) the directory flushed. On failure before the rename, the
    temporary file is removed."""
    temporary = temporary or path.with_name(f"{path.name}.part")
    try:
        write_durably(temporary, data)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    if sync_directory:
        fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so a rename or creation inside it survives a crash."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_if_there(path: Path) -> None:
    """fsync a file or directory; nothing if it is gone."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def flush_paths(files: Iterable[Path]) -> None:
    """fsync files, then their directories and the directories' parents (a patient
    directory may be new). Paths that are gone are skipped (taken meanwhile)."""
    directories: dict[Path, None] = {}
    for path in files:
        fsync_if_there(path)
        directories[path.parent] = None
        directories[path.parent.parent] = None
    for directory in directories:
        fsync_if_there(directory)


def _load_syncfs() -> "ctypes._NamedFuncPointer | None":
    """The C library's ``syncfs`` (Linux), or None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    function = getattr(ctypes.CDLL(name, use_errno=True), "syncfs", None)
    if function is not None:
        function.argtypes = [ctypes.c_int]
        function.restype = ctypes.c_int
    return function


_syncfs = _load_syncfs()


def can_sync_filesystems() -> bool:
    """Whether :func:`sync_filesystems` is available (the C library has ``syncfs``)."""
    return _syncfs is not None


def sync_filesystems(directories: Iterable[Path]) -> None:
    """Flush the filesystems holding ``directories``, one ``syncfs`` per filesystem
    (one device flush for many files, at the price of also flushing whatever else is
    dirty there). Raises OSError, also when ``syncfs`` is not available."""
    syncfs = _syncfs
    if syncfs is None:
        raise OSError("syncfs is not available")
    seen: set[int] = set()
    for directory in directories:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            device = os.fstat(descriptor).st_dev
            if device not in seen:
                seen.add(device)
                if syncfs(descriptor) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"syncfs: {os.strerror(error)}")
        finally:
            os.close(descriptor)


def make_private_directory(directory: Path) -> None:
    """Make ``directory`` and any missing parent with mode 0700 (whatever the umask)."""
    if directory.is_dir():
        return
    make_private_directory(directory.parent)
    try:
        directory.mkdir(mode=0o700)  # (the umask can only narrow it)
    except FileExistsError:
        if not directory.is_dir():  # made meanwhile by another thread: fine
            raise


def keep_private(root: Path) -> None:
    """Make the data directory (0700), or close an existing one to other users."""
    if not root.is_dir():
        make_private_directory(root)
        return
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & 0o007:
        os.chmod(root, mode & ~0o007)
        logger.warning(
            "data directory %s was open to other users (mode %o); now %o: it holds patient data",
            root,
            mode,
            mode & ~0o007,
        )
