"""The spool journal: one flush per received instance instead of two or more.

Making a new file durable takes two synchronous flushes: ``fsync`` of the
file, then ``fsync`` of its directory after the rename (without the second, a
crash can lose the file's name). The journal makes an instance durable with
one: its bytes are appended, as a checksummed record naming where it belongs,
to a segment file that was filled with zeros and flushed when it was created,
then ``fdatasync`` is called. Overwriting blocks that are already allocated
changes no metadata, so that flush writes the record and nothing else. Then
the C-STORE success can go back.

A checkpointer thread later copies the journaled instances from the segment into
their spools, flushes the files and their directories (a large batch with one
``syncfs``), and records in the segment's header how far the journal is covered.
It waits while instances keep coming, so that a burst (a study sent in one
association) is written once while it arrives and copied when the sender pauses:
it runs when nothing was appended for ``interval_s``, when the oldest waiting
instance is ``max_delay_s`` old, or when half the segment waits. Anything that
reads or moves spool files first calls ``Spool.settle``, which runs a
checkpoint: a round takes only placed, flushed instances, and an instance moved
out of the spool is never replayed into it. Waiting instances are not held in
memory: a checkpoint reads them back from the segment (from the page cache, as a
rule).

At start-up, every record after the checkpoint is compared with the spool and
written again (durably, the slow way) where the file is missing or differs.

Segment layout::

    0      header slot A  \\  magic, sequence, generation, checkpoint offset, CRC;
    4096   header slot B  /   written alternately, the valid one with the highest
                              sequence wins (a torn header write loses nothing)
    8192   records: magic, generation, payload length, CRC of payload+generation,
           payload = u16 meta length, meta JSON {"uid", "to": [[spool, key], ...]}, data

When the segment is full, a checkpoint covering every record is made and the
journal starts again at 8192 with the next generation; records of an earlier
generation are never read. A segment found with another size than asked for is
replayed, then made again at the new size (if that fits: see below).

A new segment takes at most half the free space of its filesystem (the other
half is for the spool its instances are copied into): a smaller one is made,
with a warning, when ``segment_bytes`` does not fit, and none when even
``MINIMUM_SEGMENT_BYTES`` does not (a :class:`SpoolError` naming the setting,
raised from an ``ENOSPC`` error). A segment being made is never left behind
half written.
"""

import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dicomflow import metrics
from dicomflow.durable import (
    Buffer,
    can_sync_filesystems,
    flush_paths,
    fsync_directory,
    make_private_directory,
    sync_filesystems,
    write_then_rename,
)
from dicomflow.engine.diskspace import free_bytes, no_space
from dicomflow.errors import SpoolError

logger = logging.getLogger(__name__)

SEGMENT = "segment.journal"
HEADER = struct.Struct("<4sQIQ")  # magic, sequence, generation, checkpoint offset
HEADER_MAGIC = b"DFJH"
RECORD = struct.Struct("<4sIII")  # magic, generation, payload length, crc32
RECORD_MAGIC = b"DFJR"
META_LENGTH = struct.Struct("<H")
SLOT_SIZE = 4096
DATA_START = 2 * SLOT_SIZE
DEFAULT_SEGMENT_BYTES = 256 * 1024 * 1024
MINIMUM_SEGMENT_BYTES = 4 * 1024 * 1024
SEGMENT_SETTING = "spool_journal_segment_bytes"
DEFAULT_INTERVAL_S = 0.1  # a pause in appending this long starts a checkpoint
DEFAULT_MAX_DELAY_S = 1.0  # an instance waits at most about this long to be placed
SYNCFS_FROM_FILES = 32  # batches this large are flushed with one syncfs
ZEROS = bytes(1024 * 1024)


class JournaledSpool(Protocol):
    """What the journal needs of a spool it writes into (``dicomflow.engine.spool.Spool``)."""

    @property
    def root(self) -> Path: ...

    @property
    def journal_name(self) -> str:
        """The spool's name in the journal's records."""
        ...

    def path_for(self, patient_key: str, sop_instance_uid: str) -> Path: ...

    def place(self, patient_key: str, sop_instance_uid: str, data: bytes) -> Path:
        """Write an instance into place without flushing."""
        ...

    def place_link(self, patient_key: str, sop_instance_uid: str, source: Path) -> Path:
        """Hard-link ``source`` into place without flushing."""
        ...

    def store_durably(self, patient_key: str, sop_instance_uid: str, data: bytes) -> Path:
        """Write an instance with its own flushes."""
        ...


@dataclass(frozen=True)
class Entry:
    """One journal record: an instance and the spools (by name and key) it goes to."""

    uid: str
    destinations: tuple[tuple[str, str], ...]
    data: bytes


@dataclass(frozen=True)
class Waiting:
    """A durable record not yet written into its spools: where its data lies in the
    segment, and the spool paths it becomes."""

    lsn: int
    uid: str
    destinations: tuple[tuple[str, str], ...]
    offset: int
    size: int
    paths: tuple[Path, ...]
    appended: float  # time.monotonic()


class Journal:
    """Appends received instances durably and writes them into their spools behind.

    The spools it writes (and replays) into are given to :meth:`open`, each known in
    the records by its ``journal_name``; a spool sends instances here when it was made
    with this journal in front. Instances over ``max_instance_bytes`` are stored the
    classic way (see :meth:`takes`). ``segment_bytes`` bounds how much can wait for a
    checkpoint; ``interval_s`` and ``max_delay_s`` say when the checkpointer runs (see
    above).
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_instance_bytes: int,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
    ) -> None:
        if segment_bytes < DATA_START + 4 * RECORD.size:
            raise ValueError("segment_bytes is too small")
        self.directory = directory
        self.path = directory / SEGMENT
        self.spools: dict[str, JournaledSpool] = {}
        self.segment_bytes = segment_bytes
        self._max_requested = max_instance_bytes
        self.max_instance_bytes = min(max_instance_bytes, (segment_bytes - DATA_START) // 4)
        self.interval_s = interval_s
        self.max_delay_s = max_delay_s
        self._fd = -1
        self._cond = threading.Condition()
        self._sync_lock = threading.Lock()
        self._checkpointing = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._sequence = 0
        self._offset = DATA_START  # where the next record goes
        self._lsn = 0  # bytes appended since open, across generations
        self._base_lsn = 0  # lsn at DATA_START of the current generation
        self._synced_lsn = 0
        self._checkpoint_lsn = 0
        self._inflight: set[int] = set()  # lsn of records written, not yet flushed
        self._queue: deque[Waiting] = deque()  # durable, not yet in the spools
        self._queued_bytes = 0
        self._last_append = 0.0  # time.monotonic() of the last append
        self._queued_paths: Counter[Path] = Counter()
        self._broken: str | None = None  # why the last checkpoint could not write the spools
        self._failed: str | None = None  # a flush of the segment failed: no more appends

    # -- life ----------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def open(self, spools: Iterable[JournaledSpool]) -> int:
        """Over ``spools`` (by their journal names): replay what the last checkpoint did
        not cover, start checkpointing; return the number of instances written again."""
        if self.is_open:
            return 0
        self.spools = {spool.journal_name: spool for spool in spools}
        make_private_directory(self.directory)
        wanted = self.segment_bytes
        if not self.path.exists():  # (made under another name and renamed: never half made)
            _create_segment(self.path, self._fitting(wanted))
        self._fd = os.open(self.path, os.O_RDWR)
        try:
            # A segment made with another size is read at its own size first.
            self.segment_bytes = os.fstat(self._fd).st_size
            if self.segment_bytes < DATA_START + 4 * RECORD.size:
                raise SpoolError(f"The spool journal {self.path} is too short.")
            generation, sequence, offset = self._read_header()
            replayed = self._replay(generation, offset)
            if self.segment_bytes != wanted and self._fits(wanted):
                # Replayed: its records are all in the spools.
                os.close(self._fd)
                self._fd = -1
                _create_segment(self.path, wanted)
                self._fd = os.open(self.path, os.O_RDWR)
                self.segment_bytes = wanted
                generation, sequence, _offset = self._read_header()
            room = (self.segment_bytes - DATA_START) // 4
            self.max_instance_bytes = min(self._max_requested, room)
            self._generation = generation + 1
            self._sequence = sequence
            self._offset = DATA_START
            self._write_header(self._generation, DATA_START)
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
            self.segment_bytes = wanted
            raise
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="spool-journal", daemon=True)
        self._thread.start()
        if replayed:
            logger.info("spool journal: %d instance(s) written again after a crash", replayed)
        return replayed

    def _fits(self, size: int) -> bool:
        """Whether a new segment of ``size`` bytes leaves half the free space to the spool."""
        return size <= free_bytes(self.directory) // 2

    def _fitting(self, wanted: int) -> int:
        """The size of a new segment: ``wanted``, or less when that does not fit."""
        if self._fits(wanted):
            return wanted
        free = free_bytes(self.directory)
        size = max(free // 2 // (1 << 20) << 20, 0)
        if size < MINIMUM_SEGMENT_BYTES:
            message = (
                f"The spool journal needs {MINIMUM_SEGMENT_BYTES} bytes at least (setting"
                f" {SEGMENT_SETTING} is {wanted}) and twice that free; {self.directory} has"
                f" {free} bytes free."
            )
            raise SpoolError(message) from no_space(message)
        logger.warning(
            "spool journal: a segment of %d bytes instead of %d (setting %s): %s has %d bytes"
            " free, and half of it is left to the spool",
            size,
            wanted,
            SEGMENT_SETTING,
            self.directory,
            free,
        )
        return size

    def close(self) -> None:
        """Write everything into the spools, checkpoint and stop (idempotent). If the
        spools cannot be written, the records stay for the next start."""
        if not self.is_open:
            return
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.checkpoint()
        except OSError:
            logger.exception("spool journal: last checkpoint failed; replayed at next start")
        with self._checkpointing, self._cond:
            os.close(self._fd)
            self._fd = -1
            self._cond.notify_all()

    def status(self) -> dict[str, Any]:
        """For the dashboard: bytes acknowledged and not yet in the spool, and whether
        (and why not) new instances are accepted."""
        with self._cond:
            problem = self._failed or self._broken
            return {
                "pending_bytes": self._queued_bytes,
                "writable": self.is_open and problem is None,
                "problem": problem or ("" if self.is_open else "closed"),
            }

    def takes(self, size: int) -> bool:
        """Tell whether an instance of ``size`` bytes goes through the journal."""
        return self.is_open and size <= self.max_instance_bytes

    # -- appending -----------------------------------------------------------------

    def append(self, uid: str, destinations: Sequence[tuple[str, str]], data: bytes) -> None:
        """Make ``data`` durable; it is written to ``destinations`` (spool name, key) by
        the next checkpoint."""
        meta = json.dumps({"uid": uid, "to": [list(pair) for pair in destinations]}).encode()
        payload_length = META_LENGTH.size + len(meta) + len(data)
        crc = zlib.crc32(data, zlib.crc32(meta, zlib.crc32(META_LENGTH.pack(len(meta)))))
        size = RECORD.size + payload_length
        destinations = tuple((name, key) for name, key in destinations)
        paths = tuple(self.spools[name].path_for(key, uid) for name, key in destinations)
        with self._cond:
            self._admit(size)
            generation = self._generation
            head = RECORD.pack(
                RECORD_MAGIC, generation, payload_length, _with_generation(crc, generation)
            )
            try:
                _pwritev(self._fd, [head, META_LENGTH.pack(len(meta)), meta, data], self._offset)
            except OSError as exc:
                message = f"Cannot write instance {uid} to the spool journal: {exc}."
                raise SpoolError(message) from exc
            lsn = self._lsn
            data_offset = self._offset + size - len(data)
            self._offset += size
            self._lsn += size
            self._inflight.add(lsn)
            end = self._lsn
        try:
            self._sync(end)
        except OSError as exc:
            # After a failed flush the kernel may drop the unwritten pages and report
            # success later: nothing more may be acknowledged through this journal.
            with self._cond:
                self._inflight.discard(lsn)
                self._failed = f"flushing {self.path} failed: {exc}"
            metrics.SPOOL_WRITABLE.set(0)
            logger.critical(
                "spool journal: %s; new instances are refused until the node is restarted"
                " (check the disk first)",
                self._failed,
            )
            raise SpoolError(f"Cannot flush the spool journal: {exc}.") from exc
        waiting = Waiting(lsn, uid, destinations, data_offset, len(data), paths, time.monotonic())
        with self._cond:
            self._inflight.discard(lsn)
            self._queue.append(waiting)
            self._queued_bytes += len(data)
            self._last_append = waiting.appended
            metrics.JOURNAL_PENDING_BYTES.inc(len(data))
            self._queued_paths.update(paths)
            half_full = self._half_full()
        if half_full:
            self._wake.set()

    def pending(self, paths: Iterable[Path]) -> bool:
        """Tell whether one of ``paths`` is still to be written by a checkpoint."""
        with self._cond:
            return any(path in self._queued_paths for path in paths)

    def _admit(self, size: int) -> None:
        """Wait for room (``_cond`` held): below the queue limit, and ``size`` bytes
        left in the segment (wrapping to a new generation when everything is covered)."""
        while True:
            if not self.is_open:
                raise SpoolError("The spool journal is closed.")
            if self._failed is not None:
                raise SpoolError(f"The spool journal cannot be used: {self._failed}.")
            if self._broken is not None:
                raise SpoolError(f"The spool cannot be written: {self._broken}.")
            if self._offset + size <= self.segment_bytes:
                return
            if self._inflight:
                self._cond.wait(0.5)
                continue
            self._cond.release()
            try:
                self.checkpoint(wrap=True)
            finally:
                self._cond.acquire()

    def _sync(self, end: int) -> None:
        """fdatasync the segment unless another thread's flush already covered ``end``."""
        with self._sync_lock:
            if self._synced_lsn >= end:
                return
            with self._cond:
                target = self._lsn
            os.fdatasync(self._fd)
            self._synced_lsn = target

    # -- checkpoints ---------------------------------------------------------------

    def checkpoint(self, *, wrap: bool = False) -> None:
        """Write the journaled instances into their spools, flush them, and record how
        far the journal is covered. Raises :class:`SpoolError` if the spools cannot be
        written (the instances stay journaled; receiving is refused until a
        checkpoint succeeds)."""
        if not self.is_open:
            return
        with self._checkpointing:
            started = time.monotonic()
            with self._cond:
                batch = list(self._queue)
                horizon = min(self._inflight) if self._inflight else self._lsn
                if not batch and not wrap and horizon == self._checkpoint_lsn:
                    return
            try:
                placed = [path for waiting in batch for path in self._place(waiting)]
                self._flush(placed)
            except OSError as exc:
                with self._cond:
                    first = self._broken is None
                    self._broken = str(exc)
                metrics.SPOOL_WRITABLE.set(0)
                if first:
                    logger.error(
                        "spool journal: cannot write the spool (%s); new instances are"
                        " refused until it can (retried every %.1f s)",
                        exc,
                        self.interval_s,
                    )
                raise SpoolError(f"The spool cannot be written: {exc}.") from exc
            with self._cond:
                for _ in batch:
                    waiting = self._queue.popleft()
                    self._queued_bytes -= waiting.size
                    metrics.JOURNAL_PENDING_BYTES.dec(waiting.size)
                    self._queued_paths.subtract(waiting.paths)
                self._queued_paths += Counter()  # drop zero counts
                if self._broken is not None:
                    logger.warning("spool journal: the spool can be written again")
                    metrics.SPOOL_WRITABLE.set(1)
                self._broken = None
                self._cond.notify_all()
                if not self.is_open:
                    return
                if self._queue:  # appended meanwhile: covered up to the first of them
                    horizon = min(horizon, self._queue[0].lsn)
                if wrap and not self._inflight and not self._queue and horizon == self._lsn:
                    self._generation += 1
                    self._offset = DATA_START
                    self._base_lsn = self._lsn
                offset = horizon - self._base_lsn + DATA_START
                self._write_header(self._generation, offset, sync=False)
                self._checkpoint_lsn = horizon
            # Flushed outside the lock, so that appends go on meanwhile. A round moves
            # instances only once this returns; a wrap's header is flushed by the next
            # append's own flush at the latest.
            os.fdatasync(self._fd)
            metrics.JOURNAL_CHECKPOINT.observe(time.monotonic() - started)

    def _place(self, waiting: Waiting) -> list[Path]:
        """Write a waiting instance into its spools without flushing: a file in the
        first, hard links in the others."""
        data = _pread_exactly(self._fd, waiting.size, waiting.offset)
        (name, key), *others = waiting.destinations
        first = self.spools[name].place(key, waiting.uid, data)
        links = [self.spools[other].place_link(k, waiting.uid, first) for other, k in others]
        return [first, *links]

    def _flush(self, files: list[Path]) -> None:
        """Make the placed files and their directory entries durable: an ``fsync`` per
        file and directory for a few files; for a larger batch one ``syncfs`` per
        filesystem where the C library has it (one device flush instead of one per
        file, at the price of also flushing whatever else is dirty there)."""
        if not files:
            return
        if not can_sync_filesystems() or len(files) < SYNCFS_FROM_FILES:
            flush_paths(files)
            return
        sync_filesystems(spool.root for spool in self.spools.values())

    def _due(self) -> bool:
        """Whether the checkpointer should run now: appending paused, the oldest
        waiting instance old enough, half the segment waiting, or the last try failed
        (retried every ``interval_s``)."""
        now = time.monotonic()
        with self._cond:
            if not self._queue:
                return self._checkpoint_lsn != self._lsn and not self._inflight
            return (
                self._broken is not None
                or now - self._last_append >= self.interval_s
                or now - self._queue[0].appended >= self.max_delay_s
                or self._half_full()
            )

    def _half_full(self) -> bool:
        """Whether half the segment's room waits to be placed (with ``_cond`` held)."""
        return self._queued_bytes >= (self.segment_bytes - DATA_START) // 2

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stopping:
                return  # close() makes the last checkpoint
            if not self._due():
                continue
            try:
                self.checkpoint()
            except SpoolError:
                pass  # logged; retried at the next interval
            except Exception:
                logger.exception("spool journal: checkpoint failed; retrying")

    # -- header and replay ---------------------------------------------------------

    def _write_header(self, generation: int, offset: int, *, sync: bool = True) -> None:
        self._sequence += 1
        slot = (self._sequence % 2) * SLOT_SIZE
        os.pwrite(self._fd, _header(self._sequence, generation, offset), slot)
        if sync:
            os.fdatasync(self._fd)

    def _read_header(self) -> tuple[int, int, int]:
        """(generation, sequence, checkpoint offset) of the newest valid header slot."""
        best: tuple[int, int, int] | None = None
        for slot in (0, SLOT_SIZE):
            raw = os.pread(self._fd, HEADER.size + 4, slot)
            if len(raw) < HEADER.size + 4:
                continue
            fields, (crc,) = raw[: HEADER.size], struct.unpack("<I", raw[HEADER.size :])
            magic, sequence, generation, offset = HEADER.unpack(fields)
            if magic != HEADER_MAGIC or zlib.crc32(fields) != crc:
                continue
            if not DATA_START <= offset <= self.segment_bytes:
                continue
            if best is None or sequence > best[1]:
                best = (generation, sequence, offset)
        if best is None:
            raise SpoolError(
                f"The spool journal {self.path} has no valid header (both copies are"
                " damaged). Move it aside to start without it; instances it held that"
                " are not in the spool are then lost."
            )
        return best

    def entries(self, generation: int, offset: int) -> Iterator[Entry]:
        """The valid records of ``generation`` from ``offset`` on, up to the first invalid one."""
        while offset + RECORD.size <= self.segment_bytes:
            head = os.pread(self._fd, RECORD.size, offset)
            magic, record_generation, length, crc = RECORD.unpack(head)
            if magic != RECORD_MAGIC or record_generation != generation:
                return
            if offset + RECORD.size + length > self.segment_bytes:
                return
            payload = os.pread(self._fd, length, offset + RECORD.size)
            if len(payload) != length or _with_generation(zlib.crc32(payload), generation) != crc:
                return
            entry = _decode(payload)
            if entry is None:
                return
            yield entry
            offset += RECORD.size + length

    def _replay(self, generation: int, offset: int) -> int:
        replayed = 0
        intact: list[Path] = []
        for entry in self.entries(generation, offset):
            for spool_name, key in entry.destinations:
                spool = self.spools.get(spool_name)
                if spool is None:
                    logger.error("spool journal: unknown spool %r; record skipped", spool_name)
                    continue
                try:
                    path = spool.path_for(key, entry.uid)
                except (SpoolError, ValueError) as exc:
                    logger.error("spool journal: record skipped: %s", exc)
                    continue
                if _holds(path, entry.data):
                    intact.append(path)
                    continue
                spool.store_durably(key, entry.uid, entry.data)
                metrics.JOURNAL_REPLAYED.inc()
                replayed += 1
        # Files found intact may still be in the page cache only (the process died,
        # not the machine): flush them before the new header forgets their records.
        self._flush(intact)
        return replayed


# -- helpers --------------------------------------------------------------------


def _header(sequence: int, generation: int, offset: int) -> bytes:
    """A header slot: its fields and their CRC."""
    fields = HEADER.pack(HEADER_MAGIC, sequence, generation, offset)
    return fields + struct.pack("<I", zlib.crc32(fields))


def _with_generation(crc: int, generation: int) -> int:
    return zlib.crc32(struct.pack("<I", generation), crc)


def _decode(payload: bytes) -> Entry | None:
    try:
        (meta_length,) = META_LENGTH.unpack_from(payload)
        start = META_LENGTH.size
        meta = json.loads(payload[start : start + meta_length])
        destinations = tuple((str(name), str(key)) for name, key in meta["to"])
        return Entry(str(meta["uid"]), destinations, payload[start + meta_length :])
    except (ValueError, KeyError, TypeError, struct.error):
        return None


def _holds(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _pread_exactly(descriptor: int, size: int, offset: int) -> bytes:
    parts: list[bytes] = []
    while size:
        part = os.pread(descriptor, size, offset)
        if not part:
            raise OSError(f"the spool journal ends {size} bytes early")
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _pwritev(descriptor: int, parts: list[bytes], offset: int) -> None:
    total = sum(len(part) for part in parts)
    written = os.pwritev(descriptor, parts, offset)
    if written < total:  # short write: finish it part by part
        joined = memoryview(b"".join(parts))[written:]
        offset += written
        while joined:
            count = os.pwrite(descriptor, joined, offset)
            joined = joined[count:]
            offset += count


def _create_segment(path: Path, size: int) -> None:
    """Write a zero-filled segment with a first header, flush it, rename it into place
    (never a half-made segment left behind)."""
    temporary = path.with_suffix(".creating")
    try:
        write_then_rename(path, _segment_bytes(size), temporary=temporary, sync_directory=False)
    except OSError as exc:
        message = f"Cannot make the spool journal {path} of {size} bytes: {exc}."
        raise SpoolError(message) from exc
    fsync_directory(path.parent)


def _segment_bytes(size: int) -> tuple[Buffer, ...]:
    """A new segment of ``size`` bytes, in parts: a first header, then zeros."""
    header = _header(0, 0, DATA_START)
    parts: list[Buffer] = [header]
    remaining = size - len(header)
    zeros = memoryview(ZEROS)
    while remaining > 0:
        chunk = min(remaining, len(ZEROS))
        parts.append(zeros[:chunk])
        remaining -= chunk
    return tuple(parts)
