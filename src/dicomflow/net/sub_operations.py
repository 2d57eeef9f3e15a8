"""What a Q/R requestor keeps of a C-MOVE or C-GET: the peer's sub-operation counts
(:class:`RetrieveReport`), the names of its statuses, and, for C-GET, where the
instances of the C-STORE sub-operations it answers on the same association go
(:class:`FolderStore`: one durable file each; :class:`CallbackStore`: Part-10 bytes to
a function).

A file's name comes only from its SOP Instance UID, checked by
:func:`dicomflow.dicom.keys.instance_file_name`: an instance whose UID is not a UID
("../x", "", 10 kB) is answered with a failure status and written nowhere.
"""

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from dicomflow.dicom.keys import instance_file_name, shorten
from dicomflow.durable import fsync_directory

logger = logging.getLogger(__name__)

MAX_KEPT_STATUSES = 1024
"""A report keeps the first statuses of a retrieval (a peer may send pending ones forever)."""
MAX_INSTANCE_BYTES = 1 << 30
"""An instance handed to a callback is held in memory: a longer one is refused."""
STORED, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
_SUCCESS = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
STATUS_NAMES = {
    0x0000: "Success",
    0x0122: "Refused: SOP class not supported",
    0xA700: "Refused: Out of resources",
    0xA701: "Refused: Out of resources - unable to calculate number of matches",
    0xA702: "Refused: Out of resources - unable to perform sub-operations",
    0xA801: "Refused: Move destination unknown",
    0xA900: "Failed: Identifier does not match SOP class",
    0xB000: "Warning: Sub-operations complete - one or more failures or warnings",
    0xFE00: "Cancel: Sub-operations terminated due to cancel indication",
    0xFF00: "Pending",
    0xFF01: "Pending: optional keys not supported",
}


def status_name(status: int) -> str:
    """``0xA801 (Refused: Move destination unknown)``: a status with its PS3.4 C.4 name."""
    name = STATUS_NAMES.get(status)
    if name is None and 0xC000 <= status <= 0xCFFF:
        name = "Failed: Unable to process"
    return f"0x{status:04X} ({name or 'unknown status'})"


@dataclass
class RetrieveReport:
    """What one C-MOVE or C-GET did: the counts of the peer's latest response, its final
    status, and (C-GET) the instances this side stored or refused."""

    status: int | None = None
    remaining: int = 0
    completed: int = 0
    failed: int = 0
    warning: int = 0
    stored: int = 0
    refused: int = 0
    statuses: list[int] = field(default_factory=list)
    """The responses' statuses, the final one last (at most ``MAX_KEPT_STATUSES``)."""

    @property
    def ok(self) -> bool:
        """The final status is success or a warning (some sub-operations failed)."""
        return self.status in _SUCCESS

    def update(self, status: int, counts: tuple[int, int, int, int]) -> None:
        """Take in one response: its status and (remaining, completed, failed, warning)."""
        self.status = status
        self.remaining, self.completed, self.failed, self.warning = counts
        if len(self.statuses) >= MAX_KEPT_STATUSES:
            del self.statuses[-1]
        self.statuses.append(status)


@dataclass(frozen=True)
class IncomingInstance:
    """A C-STORE sub-operation's instance, as its command names it."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str

    def file_meta(self) -> bytes:
        """The Part-10 preamble, prefix and file meta information of the instance."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(self.sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(self.sop_instance_uid)
        meta.TransferSyntaxUID = UID(self.transfer_syntax)
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        buffer.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(buffer, meta, enforce_standard=True)
        return buffer.getvalue()


class Receipt(Protocol):
    """One instance being received: its data set arrives in fragments."""

    def write(self, fragment: memoryview) -> None: ...

    def finish(self) -> int:
        """Keep the instance; return the C-STORE-RSP status."""

    def discard(self) -> None: ...


class InstanceStore(Protocol):
    """Where the instances of a C-GET go."""

    def begin(self, instance: IncomingInstance) -> Receipt:
        """Start receiving ``instance``; raise :class:`InvalidKeyError` to refuse it."""


class FolderStore:
    """Writes each instance to ``folder/<SOPInstanceUID>.dcm``: streamed to a temporary
    file beside it, flushed and fsynced, then renamed (and the folder fsynced), so a file
    with the final name is whole and durable before the success status is sent."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def begin(self, instance: IncomingInstance) -> "_FileReceipt":
        name = instance_file_name(instance.sop_instance_uid)  # raises for a non-UID
        return _FileReceipt(self.folder, name, instance.file_meta())


class _FileReceipt:
    def __init__(self, folder: Path, name: str, head: bytes) -> None:
        self.target = folder / name
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-", suffix=".part")
        self.temporary = Path(temporary)
        self.file = os.fdopen(handle, "wb")
        try:
            self.file.write(head)
        except OSError:
            self.discard()
            raise

    def write(self, fragment: memoryview) -> None:
        self.file.write(fragment)

    def finish(self) -> int:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temporary, self.target)
        fsync_directory(self.target.parent)
        return STORED

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.temporary.unlink(missing_ok=True)


class CallbackStore:
    """Hands each instance, as Part-10 bytes, to ``on_store``, whose return value is the
    C-STORE-RSP status (an exception answers 0xC000 and is logged)."""

    def __init__(self, on_store: Callable[[bytes], int]) -> None:
        self.on_store = on_store

    def begin(self, instance: IncomingInstance) -> "_MemoryReceipt":
        instance_file_name(instance.sop_instance_uid)  # the same check as for a file
        return _MemoryReceipt(self.on_store, instance)


class _MemoryReceipt:
    def __init__(self, on_store: Callable[[bytes], int], instance: IncomingInstance) -> None:
        self.on_store = on_store
        self.instance = instance
        self.data = bytearray(instance.file_meta())
        self.too_long = False

    def write(self, fragment: memoryview) -> None:
        if len(self.data) + len(fragment) > MAX_INSTANCE_BYTES:
            self.too_long = True
            self.data = bytearray()
        elif not self.too_long:
            self.data += fragment

    def finish(self) -> int:
        if self.too_long:
            logger.warning(
                "C-GET: instance %s is longer than %d bytes; refused",
                self.instance.sop_instance_uid,
                MAX_INSTANCE_BYTES,
            )
            return OUT_OF_RESOURCES
        try:
            return int(self.on_store(bytes(self.data)))
        except Exception:
            logger.exception("C-GET: on_store raised for %s", self.instance.sop_instance_uid)
            return CANNOT_UNDERSTAND

    def discard(self) -> None:
        self.data = bytearray()


def refusal(instance: IncomingInstance, exc: Exception) -> int:
    """Log why an instance is refused before it is received; return the status."""
    logger.warning("C-GET: instance %s refused: %s", shorten(instance.sop_instance_uid), exc)
    return CANNOT_UNDERSTAND
