"""The durable spool: where a received instance lives until a round takes it.

An instance is written to a temporary file, flushed and fsynced, then renamed
into ``incoming/{patient_key}/{sop_instance_uid}.dcm`` and the directory is
fsynced, all before the C-STORE success status is sent. Files are made readable
by the node's user alone (0600, directories 0700): they hold patient data. ``patient_key`` is a
hash of the patient identifier (:func:`dicomflow.dicom.keys.value_key`) and the
file name is a validated UID, so no raw DICOM value ever becomes a path.

With a journal in front (:class:`~dicomflow.engine.journal.Journal`, the node's
default; given to the spool as :class:`Journaling`, what the spool needs of it),
an instance up to the journal's size limit is made durable by one append to the
journal instead, and written here without flushing; the journal's checkpointer
flushes it shortly after, and :meth:`Spool.settle` before a round takes it.
"""

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

from dicomflow.dicom.keys import instance_file_name, is_key
from dicomflow.durable import (
    Encoded,
    fsync_directory,
    make_private_directory,
    write_durably,
)
from dicomflow.errors import SpoolError

logger = logging.getLogger(__name__)


class Journaling(Protocol):
    """What a spool needs of the journal in front of it."""

    def takes(self, size: int) -> bool:
        """Whether an instance of ``size`` bytes goes through the journal."""
        ...

    def append(self, uid: str, destinations: Sequence[tuple[str, str]], data: bytes) -> None:
        """Make ``data`` durable for ``destinations`` (journal name of a spool, key)."""
        ...

    def pending(self, paths: Iterable[Path]) -> bool:
        """Whether one of ``paths`` is still to be written by a checkpoint."""
        ...

    def checkpoint(self) -> None:
        """Write every journaled instance into its spool and flush it."""
        ...


class Spool:
    """Instances received and not yet taken by a round, on disk.

    With ``journal``, small instances are made durable by the journal and written
    here behind it; ``journal_name`` names this spool in the journal's records.
    """

    def __init__(
        self,
        root: Path,
        *,
        fsync: bool = True,
        journal: Journaling | None = None,
        journal_name: str = "",
    ) -> None:
        if journal is not None and not journal_name:
            raise ValueError("a spool behind a journal needs a journal_name")
        self.root = root
        self.incoming = root / "incoming"
        self.tmp = root / "tmp"
        self.fsync = fsync
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()
        self.journal = journal
        self.journal_name = journal_name
        for directory in (self.incoming, self.tmp):
            make_private_directory(directory)
        self._clear_tmp()

    def path_for(self, patient_key: str, sop_instance_uid: str) -> Path:
        """Where an instance of ``patient_key`` is stored (the UID is validated)."""
        if not is_key(patient_key):
            raise SpoolError(f'"{patient_key}" is not a patient key.')
        return self.incoming / patient_key / instance_file_name(sop_instance_uid)

    def store(
        self,
        patient_key: str,
        sop_instance_uid: str,
        data: Encoded,
        links: Sequence[tuple["Spool", str]] = (),
    ) -> Path:
        """Make ``data`` durable and return its final path; also hard-link it into each
        ``(spool, key)`` of ``links`` (same filesystem), as durably.

        Through the journal, the file is written by the journal's next checkpoint:
        call :meth:`settle` before reading it."""
        final = self.path_for(patient_key, sop_instance_uid)
        linked = [spool.path_for(key, sop_instance_uid) for spool, key in links]
        journal = self.journal
        if journal is not None and journal.takes(encoded_size(data)):
            destinations = [(self.journal_name, patient_key)]
            destinations += [(spool.journal_name, key) for spool, key in links]
            journal.append(sop_instance_uid, destinations, joined(data))
            return final
        if journal is not None and journal.pending([final, *linked]):
            journal.checkpoint()  # a journaled copy must not be written over this one
        path = self.store_durably(patient_key, sop_instance_uid, data)
        for spool, key in links:
            spool.link(key, sop_instance_uid, path)
        return path

    def place(self, patient_key: str, sop_instance_uid: str, data: bytes) -> Path:
        """Write ``data`` into place without flushing (the journal holds it durably)."""
        write = partial(_write, data)
        return self._place(patient_key, sop_instance_uid, write, "store", flush=False)

    def place_link(self, patient_key: str, sop_instance_uid: str, source: Path) -> Path:
        """Hard-link ``source`` into place without flushing (the journal holds it)."""
        make = partial(os.link, source)
        return self._place(patient_key, sop_instance_uid, make, "link", flush=False)

    def store_durably(self, patient_key: str, sop_instance_uid: str, data: Encoded) -> Path:
        """Write ``data`` with its own flushes (not through the journal); return its path."""

        def write(temporary: Path) -> None:
            write_durably(temporary, data, fsync=self.fsync)

        return self._place(patient_key, sop_instance_uid, write, "store")

    def settle(self) -> None:
        """Write every journaled instance into its place and flush it (before a round
        reads or moves instances, so that the journal never replays one back in)."""
        if self.journal is not None:
            self.journal.checkpoint()

    def link(self, patient_key: str, sop_instance_uid: str, source: Path) -> Path:
        """Add the already durable file ``source`` (same filesystem) by a hard link."""
        return self._place(patient_key, sop_instance_uid, partial(os.link, source), "link")

    def _place(
        self,
        patient_key: str,
        sop_instance_uid: str,
        make: Callable[[Path], None],
        verb: str,
        flush: bool = True,
    ) -> Path:
        """Make the file at a temporary path, rename it into place, fsync the directory
        (unless ``flush`` is false: the journal holds the instance)."""
        flush = flush and self.fsync
        final = self.path_for(patient_key, sop_instance_uid)
        self._ensure_dir(final.parent, flush)
        temporary = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            make(temporary)
            self._move_in(temporary, final, flush)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise SpoolError(f"Cannot {verb} instance {sop_instance_uid}: {exc}.") from exc
        if flush:
            fsync_directory(final.parent)
        return final

    def _move_in(self, temporary: Path, final: Path, flush: bool) -> None:
        try:
            os.replace(temporary, final)
        except FileNotFoundError:
            # A round emptied and removed the patient directory meanwhile.
            self._ensure_dir(final.parent, flush)
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

    def _ensure_dir(self, directory: Path, flush: bool) -> None:
        with self._lock:
            if directory in self._known_dirs and directory.is_dir():
                return
            make_private_directory(directory)
            if flush:
                fsync_directory(directory.parent)
            self._known_dirs.add(directory)

    def _clear_tmp(self) -> None:
        for leftover in self.tmp.glob("*.part"):
            leftover.unlink(missing_ok=True)


def _write(data: bytes, path: Path) -> None:
    write_durably(path, data, fsync=False)


def encoded_size(data: Encoded) -> int:
    """The length of ``data``, whole or in parts."""
    return sum(len(part) for part in data) if isinstance(data, tuple) else len(data)


def joined(data: Encoded) -> bytes:
    """``data`` as one ``bytes`` object (copied: for small instances only)."""
    return b"".join(data) if isinstance(data, tuple) else bytes(data)
