"""Moving files between a worker and a datastore: a series' instances out, results in.

A queue job that runs on another machine needs nothing but the datastore URL:

- :func:`fetch_series` writes the instances of an archived series (all of them, or
  the listed ones) into a local folder, each verified against its crc32c;
- :func:`local_folder` tells a local datastore (a folder) from an object store;
- :func:`upload_folder` copies the DICOM files a job wrote to a *staging* prefix of
  the datastore (``{datastore}/staging/{token}/{job}``), :func:`download_folder`
  brings them back on the node, and :func:`remove_folder` deletes the prefix.

Only the ``*.dcm`` files directly inside a folder are moved; their names come from
the listing and never contain a path separator.
"""

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]

from dicomflow.cod.codobject import CODObject
from dicomflow.dicom.keys import instance_file_name, uid_key
from dicomflow.errors import CODError

logger = logging.getLogger(__name__)

STAGING = "staging"


@dataclass(frozen=True)
class ArchivedSeries:
    """Where a series is archived, and which of its instances a job reads (all if empty)."""

    datastore: str
    study_uid: str
    series_uid: str
    sop_instance_uids: tuple[str, ...] = ()

    def to_kwargs(self) -> dict[str, Any]:
        """The JSON form a queue job carries."""
        return {
            "datastore": self.datastore,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "sop_instance_uids": list(self.sop_instance_uids),
        }

    @classmethod
    def from_kwargs(cls, value: object) -> "ArchivedSeries":
        """Read the JSON form back. Raises CODError if it is malformed."""
        names = ("datastore", "study_uid", "series_uid")
        if not isinstance(value, dict) or not all(isinstance(value.get(n), str) for n in names):
            raise CODError(
                f'An archived series needs "datastore", "study_uid" and "series_uid" strings; '
                f"got {value!r:.200}."
            )
        uids = value.get("sop_instance_uids") or []
        if not isinstance(uids, list) or not all(isinstance(uid, str) for uid in uids):
            raise CODError(f'"sop_instance_uids" must be a list of strings; got {uids!r:.200}.')
        return cls(value["datastore"], value["study_uid"], value["series_uid"], tuple(uids))


def fetch_series(series: ArchivedSeries, folder: Path) -> list[Path]:
    """Write the series' instances into ``folder`` as ``{sop_instance_uid}.dcm``.

    Raises:
        CODNotFoundError: if a listed instance is not in the archive.
        CODIntegrityError: if bytes read do not match their crc32c.
    """
    cod = CODObject(series.datastore, series.study_uid, series.series_uid, lock=False)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid in series.sop_instance_uids or tuple(cod.list_instances()):
        path = folder / instance_file_name(uid_key(uid, "SOPInstanceUID"))
        path.write_bytes(cod.get(uid))
        paths.append(path)
    logger.info("series %s: %d instance(s) fetched from the archive", series.series_uid, len(paths))
    return paths


def local_folder(url: str) -> Path | None:
    """The folder a datastore URL names on this machine (None for an object store)."""
    if url.startswith("file://"):
        return Path(url.removeprefix("file://"))
    return None if "://" in url else Path(url)


def staging_url(datastore: str) -> str:
    """A fresh staging prefix of ``datastore`` for the results of one series' jobs."""
    return f"{datastore.rstrip('/')}/{STAGING}/{secrets.token_hex(16)}"


def upload_folder(folder: Path, url: str) -> int:
    """Copy the ``*.dcm`` files of ``folder`` under ``url``; return how many."""
    fs, root = fsspec.core.url_to_fs(url)
    files = sorted(path for path in folder.glob("*.dcm") if path.is_file())
    if files:
        fs.makedirs(root, exist_ok=True)
    for path in files:
        fs.pipe_file(f"{root}/{path.name}", path.read_bytes())
    return len(files)


def list_files(url: str) -> list[str]:
    """Return the URLs (or paths, for a local folder) of the ``*.dcm`` files under ``url``,
    sorted."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(root)
    if not fs.isdir(root):
        return []
    names = [_name(entry) for entry in fs.ls(root, detail=True) if entry["type"] == "file"]
    keep = sorted(name for name in names if name.endswith(".dcm") and not name.startswith("."))
    return [f"{url.rstrip('/')}/{name}" for name in keep]


def _name(entry: dict[str, Any]) -> str:
    return str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]


def download_folder(url: str, folder: Path) -> int:
    """Copy the ``*.dcm`` objects under ``url`` into ``folder``; return how many."""
    files = list_files(url)
    if files:
        folder.mkdir(parents=True, exist_ok=True)
    fs, root = fsspec.core.url_to_fs(url)
    for file in files:
        name = file.rsplit("/", 1)[-1]
        (folder / name).write_bytes(fs.cat_file(f"{root}/{name}"))
    return len(files)


def remove_folder(url: str) -> None:
    """Delete everything under ``url`` (nothing if it does not exist), and its parent
    folder if that is left empty (object stores have no empty folders)."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache(root)
    if fs.exists(root):
        fs.rm(root, recursive=True)
    parent = root.rstrip("/").rsplit("/", 1)[0]
    try:
        if fs.isdir(parent) and not fs.ls(parent):
            fs.rmdir(parent)
    except OSError:  # another job wrote there meanwhile: it stays
        pass
