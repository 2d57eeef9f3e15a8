"""The series metadata JSON (``metadata.json``).

Shape::

    {"cod": {"instances": {sop_instance_uid: {
        "metadata": DICOM JSON (file meta + dataset; bulk data as "BulkDataURI"),
        "uri": "<datastore>/studies/<study>/series/<series>.tar://instances/<uid>.dcm",
        "headers": {"start_byte": int, "end_byte": int},
        "crc32c": str, "size": int, "original_path": str, "dependencies": [str],
        "diff_hash_dupe_paths": [str], "version": "1.0", "modified_datetime": str}}},
     "other": {...}}

``headers.end_byte`` is EXCLUSIVE: the member's bytes are
``tar[start_byte:end_byte]`` and ``end_byte - start_byte == size``. User
fields live under ``other`` and are written after ``cod`` is built, in their
own key, so they can never overwrite it.
"""

import json
from datetime import UTC, datetime
from typing import Any

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]
from pydicom import Dataset
from pydicom.dataelem import DataElement

from dicomflow.cod.archive import padded
from dicomflow.errors import CODError

VERSION = "1.0"
BULK_DATA_THRESHOLD = 1024
Record = dict[str, Any]


def dicom_json(ds: Dataset, uri: str) -> dict[str, Any]:
    """Return file meta + dataset as DICOM JSON, bulk data replaced by ``BulkDataURI``."""

    def bulk_uri(element: DataElement) -> str:
        return f"{uri}#{int(element.tag):08X}"

    meta = ds.file_meta.to_json_dict() if hasattr(ds, "file_meta") else {}
    body = ds.to_json_dict(BULK_DATA_THRESHOLD, bulk_uri)
    return {**meta, **body}


def new_record(
    ds: Dataset, uri: str, crc32c: str, size: int, original_path: str, dependencies: list[str]
) -> Record:
    """Return the metadata record of a staged instance (headers filled in at sync)."""
    return {
        "metadata": dicom_json(ds, uri),
        "uri": uri,
        "headers": {"start_byte": -1, "end_byte": -1},
        "crc32c": crc32c,
        "size": size,
        "original_path": original_path,
        "dependencies": list(dependencies),
        "diff_hash_dupe_paths": [],
        "version": VERSION,
        "modified_datetime": now(),
    }


def now() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def load(fs: AbstractFileSystem, path: str) -> tuple[dict[str, Record], dict[str, Any]]:
    """Return (instances, other) from ``path``, both empty if there is no metadata yet."""
    try:
        document = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return {}, {}
    except ValueError as exc:
        raise CODError(f'Metadata "{path}" is not valid JSON: {exc}.') from exc
    instances = document.get("cod", {}).get("instances", {})
    return dict(instances), dict(document.get("other", {}))


def load_thumbnail(fs: AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """Return the ``thumbnail`` section of the metadata at ``path``, if there is one."""
    try:
        section = json.loads(fs.cat_file(path)).get("thumbnail")
    except (FileNotFoundError, ValueError):
        return None
    return dict(section) if isinstance(section, dict) else None


def save(
    fs: AbstractFileSystem,
    path: str,
    instances: dict[str, Record],
    other: dict[str, Any],
    thumbnail: dict[str, Any] | None = None,
) -> None:
    """Write the metadata to a temporary file, then move it over ``path``."""
    document: dict[str, Any] = {"cod": {"instances": instances}, "other": other}
    if thumbnail is not None:
        document["thumbnail"] = thumbnail
    text = json.dumps(document, sort_keys=True).encode("utf-8")
    temporary = f"{path}.tmp"
    with fs.open(temporary, "wb") as file:
        file.write(text)
    fs.mv(temporary, path)


def committed_end(instances: dict[str, Record]) -> int:
    """Return the tar offset just after the last committed member (0 if none)."""
    ends = [record["headers"]["end_byte"] for record in instances.values()]
    return padded(max(ends, default=0))
