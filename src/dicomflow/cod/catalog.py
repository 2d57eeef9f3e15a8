"""Catalog: the studies and series of a datastore, from its layout alone."""

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod.layout import METADATA_NAME, open_datastore
from dicomflow.dicom.keys import is_valid_uid, uid_key


def _directories(fs: AbstractFileSystem, path: str) -> list[str]:
    fs.invalidate_cache(path)  # object stores cache listings; other writers add series
    if not fs.isdir(path):
        return []
    entries = fs.ls(path, detail=True)
    names = [
        str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
    ]
    return sorted(name for name in names if is_valid_uid(name))


def list_studies(datastore: str) -> list[str]:
    """Return the StudyInstanceUIDs in ``datastore``, sorted."""
    fs, root = open_datastore(datastore)
    return _directories(fs, f"{root}/studies")


def list_series(datastore: str, study_uid: str) -> list[str]:
    """Return the SeriesInstanceUIDs of a study that have synced metadata, sorted."""
    fs, root = open_datastore(datastore)
    series_dir = f"{root}/studies/{uid_key(study_uid, 'StudyInstanceUID')}/series"
    return [
        uid
        for uid in _directories(fs, series_dir)
        if fs.exists(f"{series_dir}/{uid}/{METADATA_NAME}")
    ]
