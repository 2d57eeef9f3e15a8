"""The series metadata JSON (``metadata.json``).

Shape::

    {"study_uid": str, "series_uid": str,
     "deid_study_uid": str | None, "deid_series_uid": str | None,
     "cod": {"instances": {sop_instance_uid: {
        "metadata": DICOM JSON (file meta + dataset; bulk data as "BulkDataURI"),
        "uri": "<datastore>/studies/<study>/series/<series>.tar://instances/<uid>.dcm",
        "headers": {"start_byte": int, "end_byte": int},
        "offset_tables": {} | {"CustomOffsetTable": [...], "CustomOffsetTableLengths": [...]},
        "crc32c": str, "size": int, "original_path": str, "dependencies": [str],
        "diff_hash_dupe_paths": [str], "version": "1.0", "modified_datetime": str,
        "unparsable": {element path: why}  # only where a value could not be converted
        }}},
     "thumbnail": {...} | None,
     "other": {...}}

The top level is the original library's, so a reader built for it loads our series.
``deid_*`` stay None unless the series is de-identified (``CODObject(deidentified=True)``,
the archive's ``archive_deid``); then ``study_uid``/``series_uid`` hold the same
pseudonyms, since no original UID may be written anywhere in a de-identified archive.

An element whose value cannot be converted (an InstanceNumber of "1A") is given
in ``metadata`` as UN with its bytes inline and named in ``unparsable``; the
instance itself is stored as it came.

``headers.end_byte`` is EXCLUSIVE: the member's bytes are
``tar[start_byte:end_byte]`` and ``end_byte - start_byte == size``. User
fields live under ``other`` and are written after ``cod`` is built, in their
own key, so they can never overwrite it.
"""

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydicom import Dataset

from dicomflow.cod import dicomjson
from dicomflow.cod.archive import padded
from dicomflow.cod.store import Generation, Store
from dicomflow.errors import CODError

logger = logging.getLogger(__name__)

VERSION = "1.0"
BULK_DATA_THRESHOLD = 1024
Record = dict[str, Any]


def dicom_json(ds: Dataset, uri: str, unparsable: dict[str, str] | None = None) -> dict[str, Any]:
    """Return file meta + dataset as DICOM JSON, bulk data replaced by ``BulkDataURI``
    (with ``unparsable``, values that cannot be converted are collected there: see
    :func:`dicomflow.cod.dicomjson.to_json_dict`)."""

    def bulk_uri(tag: int) -> str:
        return f"{uri}#{tag:08X}"

    meta = dicomjson.to_json_dict(ds.file_meta, 0, None) if hasattr(ds, "file_meta") else {}
    body = dicomjson.to_json_dict(ds, BULK_DATA_THRESHOLD, bulk_uri, unparsable)
    return {**meta, **body}


def new_record(
    ds: Dataset, uri: str, crc32c: str, size: int, original_path: str, dependencies: list[str]
) -> Record:
    """Return the metadata record of a staged instance (headers filled in at sync)."""
    unparsable: dict[str, str] = {}
    record: Record = {
        "metadata": dicom_json(ds, uri, unparsable),
        "uri": uri,
        "headers": {"start_byte": -1, "end_byte": -1},
        "offset_tables": {},
        "crc32c": crc32c,
        "size": size,
        "original_path": original_path,
        "dependencies": list(dependencies),
        "diff_hash_dupe_paths": [],
        "version": VERSION,
        "modified_datetime": now(),
    }
    if unparsable:
        record["unparsable"] = unparsable
        uid = ds.get("SOPInstanceUID", "?")
        for path, why in unparsable.items():
            logger.warning("instance %s: element %s kept as UN: %s", uid, path, why)
    return record


def now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Document:
    """A series' metadata as loaded, with the generation it was read at."""

    instances: dict[str, Record] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    thumbnail: dict[str, Any] | None = None
    generation: Generation = None
    study_uid: str | None = None
    series_uid: str | None = None
    deid_study_uid: str | None = None
    deid_series_uid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: the original library's top level, ``cod``, ``other``."""
        return {
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "deid_study_uid": self.deid_study_uid,
            "deid_series_uid": self.deid_series_uid,
            "cod": {"instances": self.instances},
            "thumbnail": self.thumbnail,
            "other": self.other,
        }

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> "Document":
        """The document of a parsed ``metadata.json`` (missing sections are empty)."""
        instances = document.get("cod", {}).get("instances", {})
        section = document.get("thumbnail")
        thumbnail = dict(section) if isinstance(section, dict) else None
        identity = {key: _text(document.get(key)) for key in IDENTITY_KEYS}
        return cls(dict(instances), dict(document.get("other", {})), thumbnail, **identity)


def load(store: Store, path: str) -> Document:
    """Return the metadata at ``path`` (an empty document if there is none yet)."""
    try:
        data, generation = store.read(path)
    except FileNotFoundError:
        return Document()
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise CODError(f'Metadata "{path}" is not valid JSON: {exc}.') from exc
    loaded = Document.from_dict(document)
    loaded.generation = generation
    return loaded


IDENTITY_KEYS = ("study_uid", "series_uid", "deid_study_uid", "deid_series_uid")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def save(store: Store, path: str, document: Document) -> Generation:
    """Write ``document`` over the generation it was loaded at; return the new generation.

    Raises:
        LockAcquisitionError: if the store has preconditions and another writer
            replaced the metadata since.
    """
    text = json.dumps(document.to_dict(), sort_keys=True).encode("utf-8")
    document.generation = store.replace(path, text, document.generation)
    return document.generation


def committed_end(instances: dict[str, Record]) -> int:
    """Return the tar offset just after the last committed member (0 if none)."""
    ends = [record["headers"]["end_byte"] for record in instances.values()]
    return padded(max(ends, default=0))
