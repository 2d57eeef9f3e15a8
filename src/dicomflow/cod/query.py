"""Read-only queries over a datastore's series, answered from ``metadata.json`` alone.

:class:`ArchiveReader` lists every series with one recursive listing and keeps
what it parsed, keyed by each metadata file's identity (size plus ETag, mtime or
generation), so a later request re-reads only the series that changed:

- :class:`SeriesSummary` -- per series, the top-level, non-bulk attributes of one
  instance (patient, study and series level), the instance count and modality;
  small, kept for every series.
- :class:`SeriesDocument` -- the full instance records of one series, kept for the
  few most recently used series.

Instance bytes and frames are read by ranged reads of the series tar and checked
against the recorded size and crc32c, as :meth:`CODObject.get` does.
"""

import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod import frames
from dicomflow.cod.archive import read_range
from dicomflow.cod.checksum import checksum
from dicomflow.cod.layout import METADATA_NAME, SeriesLayout, open_datastore
from dicomflow.cod.metadata import Record
from dicomflow.dicom.keys import is_valid_uid, uid_key
from dicomflow.errors import CODError, CODIntegrityError, CODNotFoundError

logger = logging.getLogger(__name__)

DOCUMENTS_KEPT = 16
IDENTITY_FIELDS = (
    "ETag",
    "etag",
    "generation",
    "mtime",
    "LastModified",
    "last_modified",
    "created",
)
SKIPPED_GROUPS = (0x0002, 0x7FE0)
MODALITY = "00080060"
INSTANCE_NUMBER = "00200013"

DicomJson = dict[str, Any]


@dataclass(frozen=True)
class SeriesDocument:
    """The instance records of one series' metadata.json."""

    study_uid: str
    series_uid: str
    instances: dict[str, Record]
    identity: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class SeriesSummary:
    """What study and series queries need of one series."""

    study_uid: str
    series_uid: str
    attributes: DicomJson
    instance_count: int
    identity: tuple[Any, ...] | None = field(default=None, compare=False)

    @property
    def modality(self) -> str | None:
        values = self.attributes.get(MODALITY, {}).get("Value") or [None]
        return None if values[0] is None else str(values[0])


def plain_attributes(metadata: DicomJson) -> DicomJson:
    """Return the top-level attributes of a DICOM JSON dataset without file meta, pixel
    data or bulk data (what a query may match and return)."""
    kept: DicomJson = {}
    for tag, element in metadata.items():
        if int(tag[:4], 16) in SKIPPED_GROUPS or "BulkDataURI" in element:
            continue
        kept[tag] = element
    return kept


def summarize(document: SeriesDocument) -> SeriesSummary:
    """Return the summary of a series: attributes of its first instance by InstanceNumber."""
    first = min(document.instances.items(), key=_instance_order, default=None)
    attributes = plain_attributes(first[1].get("metadata", {})) if first else {}
    return SeriesSummary(
        document.study_uid,
        document.series_uid,
        attributes,
        len(document.instances),
        document.identity,
    )


def instance_number(record: Record) -> int:
    """Return an instance record's InstanceNumber (0 when absent or unreadable)."""
    values = record.get("metadata", {}).get(INSTANCE_NUMBER, {}).get("Value") or [0]
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return 0


def _instance_order(item: tuple[str, Record]) -> tuple[int, str]:
    return instance_number(item[1]), item[0]


class ArchiveReader:
    """Queries over the datastore at ``datastore`` (an fsspec URL or a local path)."""

    def __init__(self, datastore: str, documents_kept: int = DOCUMENTS_KEPT) -> None:
        self.datastore = datastore
        self.fs: AbstractFileSystem
        self.fs, self.root = open_datastore(datastore)
        self._summaries: dict[tuple[str, str], SeriesSummary] = {}
        self._documents: OrderedDict[tuple[str, str], SeriesDocument] = OrderedDict()
        self._documents_kept = documents_kept
        self._lock = threading.Lock()

    def summaries(self, study_uid: str | None = None) -> list[SeriesSummary]:
        """Return a summary of every series with metadata (of one study when given),
        ordered by study then series."""
        found = self._listing(study_uid)
        current: dict[tuple[str, str], SeriesSummary] = {}
        for key, identity in sorted(found.items()):
            with self._lock:
                cached = self._summaries.get(key)
            if cached is not None and identity is not None and cached.identity == identity:
                current[key] = cached
                continue
            try:
                document = self._load(*key, identity)
            except CODError as exc:
                logger.warning("series %s left out of queries: %s", key[1], exc)
                continue
            if document is not None:
                current[key] = summarize(document)
        with self._lock:
            kept = {} if study_uid is None else self._summaries
            self._summaries = {k: v for k, v in kept.items() if k[0] != study_uid} | current
        return list(current.values())

    def document(self, study_uid: str, series_uid: str) -> SeriesDocument | None:
        """Return the records of one series, or None if it has no metadata."""
        layout = SeriesLayout(self.root, study_uid, series_uid)
        self.fs.invalidate_cache()  # another process may have written since
        try:
            identity = _identity(self.fs.info(layout.metadata))
        except FileNotFoundError:
            return None
        key = (study_uid, series_uid)
        with self._lock:
            cached = self._documents.get(key)
            if cached is not None and identity is not None and cached.identity == identity:
                self._documents.move_to_end(key)
                return cached
        return self._load(study_uid, series_uid, identity)

    def study_documents(self, study_uid: str) -> list[SeriesDocument]:
        """Return the records of every series of a study, ordered by series UID."""
        series = self.summaries(study_uid)
        documents = [self.document(s.study_uid, s.series_uid) for s in series]
        return [document for document in documents if document is not None]

    def instance_bytes(self, document: SeriesDocument, sop_instance_uid: str) -> bytes:
        """Return the Part-10 bytes of an instance, checked against its size and crc32c.

        Raises:
            CODNotFoundError: if the series has no such instance.
            CODIntegrityError: if the stored bytes do not match the record.
        """
        record = self._record(document, sop_instance_uid)
        headers = record["headers"]
        tar = self._layout(document).tar
        data = read_range(self.fs, tar, headers["start_byte"], headers["end_byte"])
        if len(data) != record["size"] or checksum(data) != record["crc32c"]:
            raise CODIntegrityError(
                f'Instance "{sop_instance_uid}" in "{tar}" has crc32c "{checksum(data)}" and '
                f'size {len(data)}; expected "{record["crc32c"]}" and {record["size"]}.'
            )
        return data

    def frame_bytes(self, document: SeriesDocument, sop_instance_uid: str, index: int) -> bytes:
        """Return frame ``index`` (from 0) by ranged reads through the offset tables.

        Raises:
            CODNotFoundError: if there is no such instance, frame or offset table.
        """
        record = self._record(document, sop_instance_uid)
        read = partial(read_range, self.fs, self._layout(document).tar)
        return frames.read_frame(sop_instance_uid, record.get("offset_tables"), index, read)

    def thumbnail_jpeg(self, document: SeriesDocument) -> bytes | None:
        """Return the series' stored ``thumbnail.jpg``, if there is one."""
        path = f"{self._layout(document).folder}/thumbnail.jpg"
        try:
            data: bytes = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        return data

    def _record(self, document: SeriesDocument, sop_instance_uid: str) -> Record:
        record = document.instances.get(uid_key(sop_instance_uid))
        if record is None:
            raise CODNotFoundError(
                f'Series "{document.series_uid}" has no instance "{sop_instance_uid}".'
            )
        return record

    def _layout(self, document: SeriesDocument) -> SeriesLayout:
        return SeriesLayout(self.root, document.study_uid, document.series_uid)

    def _listing(self, study_uid: str | None) -> dict[tuple[str, str], tuple[Any, ...] | None]:
        """Return (study, series) -> metadata identity, from one recursive listing."""
        folder = f"{self.root}/studies"
        if study_uid is not None:
            folder = f"{folder}/{uid_key(study_uid, 'StudyInstanceUID')}"
        self.fs.invalidate_cache()  # object stores cache listings; others write
        try:
            entries = self.fs.find(folder, detail=True)
        except FileNotFoundError:
            return {}
        found: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        for name, info in entries.items():
            parts = str(name).rstrip("/").split("/")
            if len(parts) < 5 or parts[-1] != METADATA_NAME or parts[-3] != "series":
                continue
            study_uid, series_uid = parts[-4], parts[-2]
            if parts[-5] == "studies" and is_valid_uid(study_uid) and is_valid_uid(series_uid):
                found[(study_uid, series_uid)] = _identity(info)
        return found

    def _load(
        self, study_uid: str, series_uid: str, identity: tuple[Any, ...] | None
    ) -> SeriesDocument | None:
        path = SeriesLayout(self.root, study_uid, series_uid).metadata
        try:
            content = json.loads(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise CODError(f'Metadata "{path}" is not valid JSON: {exc}.') from exc
        instances = content.get("cod", {}).get("instances", {}) if isinstance(content, dict) else {}
        document = SeriesDocument(study_uid, series_uid, dict(instances), identity)
        with self._lock:
            self._documents[(study_uid, series_uid)] = document
            self._documents.move_to_end((study_uid, series_uid))
            while len(self._documents) > self._documents_kept:
                self._documents.popitem(last=False)
        return document


def _identity(info: dict[str, Any]) -> tuple[Any, ...] | None:
    """Return what identifies one version of a file (None when the store tells nothing)."""
    marks = tuple(str(info[name]) for name in IDENTITY_FIELDS if info.get(name) is not None)
    return (info.get("size"), *marks) if marks else None
