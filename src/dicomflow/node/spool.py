"""The durable spool: where a received instance lives until a round takes it.

An instance is written to a temporary file, flushed and fsynced, then renamed
into ``incoming/{patient_key}/{sop_instance_uid}.dcm`` and the directory is
fsynced, all before the C-STORE success status is sent. ``patient_key`` is a
hash of the patient identifier (:func:`dicomflow.dicom.keys.value_key`) and the
file name is a validated UID, so no raw DICOM value ever becomes a path.
"""

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

from dicomflow.dicom.keys import instance_file_name, is_key
from dicomflow.errors import SpoolError

logger = logging.getLogger(__name__)


class Spool:
    """Instances received and not yet taken by a round, on disk."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.tmp = root / "tmp"
        self.fsync = fsync
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()
        for directory in (self.incoming, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._clear_tmp()

    def path_for(self, patient_key: str, sop_instance_uid: str) -> Path:
        """Where an instance of ``patient_key`` is stored (the UID is validated)."""
        if not is_key(patient_key):
            raise SpoolError(f'"{patient_key}" is not a patient key.')
        return self.incoming / patient_key / instance_file_name(sop_instance_uid)

    def store(self, patient_key: str, sop_instance_uid: str, data: bytes) -> Path:
        """Write ``data`` durably and return its final path."""

        def write(temporary: Path) -> None:
            write_durably(temporary, data, fsync=self.fsync)

        return self._place(patient_key, sop_instance_uid, write, "store")

    def link(self, patient_key: str, sop_instance_uid: str, source: Path) -> Path:
        """Add the already durable file ``source`` (same filesystem) by a hard link."""
        return self._place(patient_key, sop_instance_uid, partial(os.link, source), "link")

    def _place(
        self, patient_key: str, sop_instance_uid: str, make: Callable[[Path], None], verb: str
    ) -> Path:
        """Make the file at a temporary path, rename it into place, fsync the directory."""
        final = self.path_for(patient_key, sop_instance_uid)
        self._ensure_dir(final.parent)
        temporary = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            make(temporary)
            self._move_in(temporary, final)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise SpoolError(f"Cannot {verb} instance {sop_instance_uid}: {exc}.") from exc
        if self.fsync:
            fsync_directory(final.parent)
        return final

    def _move_in(self, temporary: Path, final: Path) -> None:
        try:
            os.replace(temporary, final)
        except FileNotFoundError:
            # A round emptied and removed the patient directory meanwhile.
            self._ensure_dir(final.parent)
            os.replace(temporary, final)

    def instances(self) -> Iterator[tuple[str, Path]]:
        """Every stored instance as ``(patient_key, path)``, for recovery after a restart."""
        for patient_dir in sorted(self.incoming.iterdir()):
            if not (patient_dir.is_dir() and is_key(patient_dir.name)):
                continue
            for path in sorted(patient_dir.glob("*.dcm")):
                yield patient_dir.name, path

    def forget_empty(self, patient_key: str) -> None:
        """Remove the directory of ``patient_key`` if a round emptied it."""
        directory = self.incoming / patient_key
        with self._lock:
            self._known_dirs.discard(directory)
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _ensure_dir(self, directory: Path) -> None:
        with self._lock:
            if directory in self._known_dirs and directory.is_dir():
                return
            directory.mkdir(parents=True, exist_ok=True)
            if self.fsync:
                fsync_directory(directory.parent)
            self._known_dirs.add(directory)

    def _clear_tmp(self) -> None:
        for leftover in self.tmp.glob("*.part"):
            leftover.unlink(missing_ok=True)


def write_durably(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` and (optionally) fsync it."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        if fsync:
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory: Path) -> None:
    """fsync a directory so a rename or creation inside it survives a crash."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
