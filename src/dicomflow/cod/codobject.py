"""CODObject: one series of a Cloud Optimized DICOM datastore, read or written.

``lock=True`` acquires the series lock (see :mod:`dicomflow.cod.locker`);
``lock=False`` reads only, and ``append``/``sync`` then need ``dirty=True``
(changes stay in this object and are never written). ``append`` stages new
instances; ``sync`` appends their bytes to the series tar (how: see
:mod:`dicomflow.cod.store`), then writes the metadata, checking the lock
generation before each write; on a store with preconditions each write is also
conditional on the generation of the tar and of the metadata this writer last
saw. Readers therefore never see metadata pointing at bytes that are not there.

The original library's interface is here too: ``client=`` (``None``: fsspec finds
the filesystem from the URL; an fsspec filesystem: used as given; any other client
object, such as a ``google.cloud.storage.Client``, is kept as ``client`` and fsspec
reaches the datastore), ``tar_uri``/``metadata_uri``/``index_uri``/``error_log_uri``,
``get_metadata(dirty=)``, ``upload_error_log()``, an ``error.log`` that stops new
objects on the series until ``override_errors=True``, and ``append()`` results that
unpack as ``new, same, conflict, errors``.
"""

import io
import logging
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, Self

from pydicom import dcmread

from dicomflow.cod import frames, metadata, thumbnail
from dicomflow.cod.append_check import (
    AppendOutcome,
    AppendResult,
    Fetched,
    check_sizes,
    fetch,
    hinted_duplicate,
)
from dicomflow.cod.archive import tar_parts
from dicomflow.cod.checksum import checksum
from dicomflow.cod.errorlog import ErrorLog
from dicomflow.cod.instance import Instance, delete_local_file
from dicomflow.cod.layout import SeriesLayout, SeriesURIs, member_name, open_datastore
from dicomflow.cod.locker import Locker
from dicomflow.cod.store_registry import open_store
from dicomflow.dicom.keys import uid_key
from dicomflow.errors import (
    CleanOpOnUnlockedCODObjectError,
    CODError,
    CODIntegrityError,
    CODNotFoundError,
    CODObjectNotFoundError,
    LockUnspecifiedError,
)

logger = logging.getLogger(__name__)


@dataclass
class _Staged:
    instance: Instance
    data: bytes
    record: metadata.Record
    delete_local_origin: bool = False


class CODObject(SeriesURIs):
    """A series in a datastore (an fsspec URL: local directory or ``memory://``)."""

    def __init__(
        self,
        datastore_path: str,
        study_uid: str,
        series_uid: str,
        lock: bool | None = None,
        lock_token: str | None = None,
        *,
        client: Any = None,
        create_if_missing: bool = True,
        override_errors: bool = False,
        lock_generation: str | None = None,
        deidentified: bool = False,
    ) -> None:
        """``deidentified`` marks a writer of de-identified instances (see
        :meth:`_mark_deidentified`).

        Raises:
        LockUnspecifiedError: (a ``TypeError``) if ``lock`` is not chosen.
        ErrorLogExistsError: if ``lock=True`` and the series has an ``error.log`` (unless
            ``override_errors``); a reader (``lock=False``) is only warned.
        CODObjectNotFoundError: if the series has no metadata and not ``create_if_missing``.
        LockAcquisitionError: if ``lock=True`` and another writer holds the lock.
        CODError: if ``deidentified`` and the series holds instances not de-identified.
        """
        if lock is None:
            raise LockUnspecifiedError(
                f'Series "{series_uid}": lock is None; pass lock=True to write or lock=False '
                "to read."
            )
        self.datastore_path, self.client = datastore_path, client
        self.fs, root = open_datastore(datastore_path, client)
        self.layout = SeriesLayout(root, study_uid, series_uid)
        self.store = open_store(self.fs)
        self._lock = bool(lock)
        self._error_log = ErrorLog(self.store, self.layout.error_log, self.error_log_uri)
        self._error_log.check(override_errors, reader=not lock)
        if not create_if_missing and self.store.generation(self.layout.metadata) is None:
            raise CODObjectNotFoundError(
                f'Series "{series_uid}" has no metadata at "{self.metadata_uri}" '
                "(create_if_missing=False)."
            )
        self._locker = Locker(self.store, self.layout.lock)
        if lock:
            self._take_lock(lock_token or lock_generation)
        document = metadata.load(self.store, self.layout.metadata)
        self._instances, self.other = document.instances, document.other
        self.thumbnail, self._metadata_generation = document.thumbnail, document.generation
        self._deid = (document.deid_study_uid, document.deid_series_uid)
        self._deidentified = deidentified
        if deidentified:
            self._mark_deidentified()
        self._tar_generation = self.store.generation(self.layout.tar) if lock else None
        self._staged: dict[str, _Staged] = {}

    def _mark_deidentified(self) -> None:
        """A de-identified series is filed under its pseudonymous UIDs: the metadata's
        ``study_uid``/``series_uid`` and ``deid_study_uid``/``deid_series_uid`` all hold
        them (no original UID is ever written). A series of identified instances is never
        turned into one (the lock just taken is released)."""
        if self._instances and self._deid == (None, None):
            if self._locker.token is not None:
                self._locker.release()
            raise CODError(
                f'Series "{self.series_uid}" holds instances that are not de-identified; '
                "de-identified instances are not added to it."
            )
        self._deid = (self.study_uid, self.series_uid)

    @property
    def deid_study_uid(self) -> str | None:
        """The de-identified StudyInstanceUID (None unless the series is de-identified)."""
        return self._deid[0]

    @property
    def deid_series_uid(self) -> str | None:
        """The de-identified SeriesInstanceUID (None unless the series is de-identified)."""
        return self._deid[1]

    @property
    def is_deidentified(self) -> bool:
        """Whether the series holds de-identified instances only (its metadata says so)."""
        return self._deid[0] is not None

    def _take_lock(self, token: str | None) -> None:
        """Acquire the lock, or re-acquire the one ``token`` names (after deserializing)."""
        if token is not None:
            self._locker.reacquire(token)
        else:
            self._locker.acquire()

    @property
    def lock(self) -> bool:
        """Whether this object holds the series lock (fixed at construction)."""
        return self._lock

    @property
    def lock_generation(self) -> str | None:
        """The generation (token) of the lock this object holds, None if none."""
        return self._locker.token

    @property
    def study_uid(self) -> str:
        return self.layout.study_uid

    @property
    def series_uid(self) -> str:
        return self.layout.series_uid

    def upload_error_log(self, message: str, dirty: bool = False) -> None:
        """Write ``error.log`` (say what is wrong with the series); new objects on the series
        then fail until one is made with ``override_errors=True``.

        Raises:
            ErrorLogExistsError: if the series already has one (it is never overwritten).
        """
        self._check_writable("upload_error_log", dirty)
        self._error_log.write(message)

    def get_metadata(
        self, create_if_missing: bool = True, dirty: bool = False
    ) -> metadata.Document:
        """The series metadata (synced and staged instances), as the JSON document holds it.

        Raises:
            CleanOpOnUnlockedCODObjectError: on an unlocked object unless ``dirty=True``.
            CODObjectNotFoundError: if the series has no metadata and not ``create_if_missing``.
        """
        self._check_writable("get_metadata", dirty)
        if not create_if_missing and self._metadata_generation is None:
            raise CODObjectNotFoundError(
                f'Series "{self.series_uid}" has no metadata at "{self.metadata_uri}".'
            )
        instances = {**self._instances, **{u: s.record for u, s in self._staged.items()}}
        return self._document(instances)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            logger.error("series %s: error inside the context; lock left", self.layout.series_uid)
        elif self._locker.token is not None:
            self.release()

    def release(self) -> None:
        """Release the lock (it must still be ours); unsynced instances are dropped."""
        if self._staged:
            logger.warning(
                "series %s: %d unsynced instances dropped",
                self.layout.series_uid,
                len(self._staged),
            )
        self._locker.release()

    def serialize(self) -> dict[str, Any]:
        """Return the arguments that rebuild this object and re-acquire its lock."""
        if self._staged:
            raise CODError(
                f'Series "{self.layout.series_uid}" has {len(self._staged)} unsynced '
                "instances; sync before serializing."
            )
        return {
            "datastore_path": self.datastore_path,
            "study_uid": self.layout.study_uid,
            "series_uid": self.layout.series_uid,
            "lock": self.lock,
            "lock_token": self._locker.token,
            **({"deidentified": True} if self._deidentified else {}),
        }

    @classmethod
    def deserialize(
        cls, serialized_obj: dict[str, Any] | None = None, client: Any = None, **data: Any
    ) -> "CODObject":
        """Rebuild a serialized object (``deserialize(serialized, client)`` or
        ``deserialize(**serialized, client=...)``); its lock must still hold the same
        generation."""
        return cls(**{**(serialized_obj or {}), **data}, client=client)

    def append(
        self,
        instances: list[Instance],
        max_instance_size: float = 10,
        max_series_size: float = 100,
        delete_local_origin: bool = False,
        dirty: bool = False,
    ) -> AppendResult:
        """Stage instances for the next sync; one bad instance never stops the others.

        Sizes are in GiB; an instance over a limit is an error. ``delete_local_origin``
        deletes each new instance's local file once it is synced (never before).
        """
        self._check_writable("append", dirty)
        if self.is_deidentified and not self._deidentified:
            raise CODError(
                f'Series "{self.series_uid}" is de-identified: only a de-identified writer '
                "(deidentified=True) adds instances to it."
            )
        result = AppendResult()
        for instance in instances:
            try:
                outcome = self._append_one(instance, max_instance_size, max_series_size)
            except Exception as exc:  # any failure is this instance's, recorded as data
                logger.warning(
                    "series %s: %r not appended: %s", self.layout.series_uid, instance, exc
                )
                result.errors.append((instance, exc))
                continue
            result.add(outcome, instance)
            if outcome is AppendOutcome.NEW and delete_local_origin:
                self._staged[instance.instance_uid()].delete_local_origin = True
        return result

    def _append_one(
        self, instance: Instance, max_instance: float, max_series: float
    ) -> AppendOutcome:
        if hinted_duplicate(instance, self._known_crc32c):
            return AppendOutcome.DUPLICATE
        fetched = fetch(instance, self.layout.study_uid, self.layout.series_uid)
        uid = fetched.sop_instance_uid
        existing = self._record(uid)
        if existing is None:
            check_sizes(instance, len(fetched.data), self._series_bytes(), max_instance, max_series)
            self._stage(instance, fetched)
            return AppendOutcome.NEW
        if existing["crc32c"] == fetched.crc32c:
            if uid in self._instances:
                instance._verified_in = existing["uri"]
            return AppendOutcome.DUPLICATE
        existing["diff_hash_dupe_paths"].append(instance._original_path)
        existing["modified_datetime"] = metadata.now()
        return AppendOutcome.CONFLICT

    def _stage(self, instance: Instance, fetched: Fetched) -> None:
        uid = fetched.sop_instance_uid
        uri = f"{self.fs.unstrip_protocol(self.layout.tar)}://{member_name(uid)}"
        record = metadata.new_record(
            fetched.dataset,
            uri,
            fetched.crc32c,
            len(fetched.data),
            instance._original_path,
            instance.dependencies,
        )
        self._staged[uid] = _Staged(instance, fetched.data, record)

    def sync(self, dirty: bool = False) -> None:
        """Append staged bytes to the tar, then write the metadata, each under the lock check.

        Without a lock (``dirty=True``) nothing is written. Raises:
            LockAcquisitionError: if the lock file no longer holds our generation.
        """
        self._check_writable("sync", dirty)
        if not self.lock:
            logger.info("series %s: dirty sync, nothing written", self.layout.series_uid)
            return
        self._locker.verify()
        committed = dict(self._instances)
        if not self._staged and not committed and self._metadata_generation is None:
            logger.info("series %s: no instance; nothing written", self.layout.series_uid)
            return  # no series without instances (all of them failed to append, say)
        if self._staged:
            start = metadata.committed_end(self._instances)
            members = [(member_name(uid), staged.data) for uid, staged in self._staged.items()]
            parts, ranges = tar_parts(start, members)
            self._tar_generation = self.store.append(
                self.layout.tar, start, parts, self._tar_generation
            )
            for (uid, staged), (begin, end) in zip(self._staged.items(), ranges, strict=True):
                staged.record["headers"] = {"start_byte": begin, "end_byte": end}
                frames.attach_offset_tables(staged.record, staged.data, begin)
                committed[uid] = staged.record
        self._locker.verify()
        self._save(committed)
        self._instances = committed
        for staged in self._staged.values():
            staged.instance.dicom_uri = staged.instance._verified_in = staged.record["uri"]
            if staged.delete_local_origin:
                delete_local_file(staged.instance._original_path)
        self._staged.clear()

    def get(self, sop_instance_uid: str) -> bytes:
        """Return an instance's Part-10 bytes by a ranged read, checked against its crc32c.

        Raises:
            InvalidKeyError: if ``sop_instance_uid`` is not a valid UID.
            CODNotFoundError: if the series has no such instance.
            CODIntegrityError: if the bytes read do not match their size and crc32c.
        """
        record = self._instances.get(sop_instance_uid)  # a synced UID: checked when stored
        if record is None or sop_instance_uid in self._staged:
            uid = uid_key(sop_instance_uid)
            if uid in self._staged:
                return self._staged[uid].data
            raise CODNotFoundError(f'Series "{self.layout.series_uid}" has no instance "{uid}".')
        data = self._read_checked(record)
        if data is None:  # a local tar replaced under a long-lived reader: reopen it once
            self.store.reopen(self.layout.tar)
            data = self._read_checked(record)
        if data is None:
            data = self._read_member(record)
            raise CODIntegrityError(
                f'Instance "{sop_instance_uid}" in "{self.layout.tar}" has crc32c '
                f'"{checksum(data)}" and size {len(data)}; expected "{record["crc32c"]}" and '
                f"{record['size']}."
            )
        return data

    def _read_member(self, record: metadata.Record) -> bytes:
        headers = record["headers"]
        return self.store.read_range(self.layout.tar, headers["start_byte"], headers["end_byte"])

    def _read_checked(self, record: metadata.Record) -> bytes | None:
        """The member's bytes, or None if their size or crc32c is not the recorded one."""
        data = self._read_member(record)
        if len(data) != record["size"] or checksum(data) != record["crc32c"]:
            return None
        return data

    def get_frame(self, sop_instance_uid: str, index: int) -> bytes:
        """Return frame ``index`` (from 0) of a multi-frame instance by ranged reads.

        Native pixel data gives the frame's raw bytes; encapsulated data its fragment bytes.
        """
        uid = uid_key(sop_instance_uid)
        staged = self._staged.get(uid)
        if staged is not None:
            data = staged.data
            return frames.read_frame(uid, frames.offset_tables(data), index, lambda s, e: data[s:e])
        tables = self.instance_metadata(uid).get("offset_tables")
        return frames.read_frame(
            uid, tables, index, partial(self.store.read_range, self.layout.tar)
        )

    def write_thumbnail(self) -> dict[str, Any]:
        """Write ``thumbnail.jpg`` (one frame) or ``thumbnail.mp4`` beside metadata.json and
        record it as the metadata's ``thumbnail`` section.

        Returns that section (see :mod:`dicomflow.cod.thumbnail`), with the file's ``uri``.
        """
        self._check_writable("write_thumbnail", dirty=False)
        datasets = [dcmread(io.BytesIO(self.get(uid))) for uid in self.list_instances()]
        data, kind, info = thumbnail.make_thumbnail(datasets)
        path = f"{self.layout.folder}/thumbnail.{kind}"
        self._locker.verify()
        self.fs.makedirs(self.layout.folder, exist_ok=True)
        with self.fs.open(path, "wb") as file:
            file.write(data)
        self.thumbnail = {**info, "uri": self.fs.unstrip_protocol(path)}
        self._locker.verify()
        self._save(self._instances)
        return self.thumbnail

    def _document(self, instances: dict[str, metadata.Record]) -> metadata.Document:
        return metadata.Document(
            instances,
            self.other,
            self.thumbnail,
            self._metadata_generation,
            self.study_uid,
            self.series_uid,
            *self._deid,
        )

    def _save(self, instances: dict[str, metadata.Record]) -> None:
        document = self._document(instances)
        self._metadata_generation = metadata.save(self.store, self.layout.metadata, document)

    def _series_bytes(self) -> int:
        records = [*self._instances.values(), *(s.record for s in self._staged.values())]
        return sum(int(record["size"]) for record in records)

    def list_instances(self) -> list[str]:
        """Return the SOPInstanceUIDs of the series (synced and staged), sorted."""
        return sorted(set(self._instances) | set(self._staged))

    def instance_metadata(self, sop_instance_uid: str) -> metadata.Record:
        """Return the metadata record of an instance (synced or staged)."""
        record = self._record(uid_key(sop_instance_uid))
        if record is None:
            raise CODNotFoundError(
                f'Series "{self.layout.series_uid}" has no instance "{sop_instance_uid}".'
            )
        return record

    def _record(self, uid: str) -> metadata.Record | None:
        staged = self._staged.get(uid)
        return staged.record if staged is not None else self._instances.get(uid)

    def _known_crc32c(self, uid: str) -> str | None:
        record = self._record(uid)
        return None if record is None else str(record["crc32c"])

    def _check_writable(self, operation: str, dirty: bool) -> None:
        if not self.lock and not dirty:
            raise CleanOpOnUnlockedCODObjectError(
                f'Series "{self.layout.series_uid}": {operation} needs lock=True, or '
                "dirty=True to change only this local object."
            )
        if self.lock and dirty:
            logger.warning("Performing dirty operation on locked CODObject: %s", self)
