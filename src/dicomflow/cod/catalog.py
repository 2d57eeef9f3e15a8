"""Catalog: the patients, studies, series and instances of an archive, indexed.

The datastore (series tars plus ``metadata.json``) is the source of truth; a
catalog is an index of it, updated by every archive sync and rebuildable from the
datastore at any time. It answers QIDO-RS, C-FIND, the retrievals of C-MOVE and
C-GET, and the dashboard's archive pages, without listing the datastore.

:class:`Catalog` is what its users call; :func:`open_catalog` opens one by
location (a SQLite file by default, ``postgresql://…`` scaled out). The one
implementation is SQL (:mod:`dicomflow.cod.catalog_sql`: tables and searches;
:mod:`dicomflow.cod.catalog_rows`: what a series becomes; :mod:`dicomflow.cod.catalog_filter`:
matching keys as SQL conditions; :mod:`dicomflow.cod.catalog_reindex`: the rebuild).

Also here: :func:`list_studies` and :func:`list_series`, which read the
datastore's layout alone.
"""

from pathlib import Path
from typing import Protocol

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod.catalog_sql import open_postgres, open_sqlite
from dicomflow.cod.catalog_types import EVERYWHERE, Level, LocatedInstance, Scope, redacted
from dicomflow.cod.layout import METADATA_NAME, open_datastore
from dicomflow.cod.query import SeriesDocument
from dicomflow.dicom.keys import is_valid_uid, uid_key
from dicomflow.dicom.matching import DicomJson, Query
from dicomflow.errors import CatalogError

__all__ = [
    "Catalog",
    "Level",
    "LocatedInstance",
    "Scope",
    "default_catalog",
    "list_series",
    "list_studies",
    "open_catalog",
]

CATALOG_NAME = "catalog.sqlite"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Catalog(Protocol):
    """An index of one archive's patients, studies, series and instances."""

    def record(self, document: SeriesDocument) -> None:
        """Add or replace one series and its instances, from its metadata; a series whose
        metadata holds no instance is forgotten. Idempotent."""

    def forget(self, study_uid: str, series_uid: str) -> None:
        """Remove one series and its instances (nothing if it is not catalogued)."""

    def search(self, level: Level, query: Query, scope: Scope = EVERYWHERE) -> list[DicomJson]:
        """The entities at ``level`` within ``scope`` matching every key of ``query``
        (PS3.4 C.2.2.2 matching, as :meth:`Query.matches`), in a stable order, paged by
        ``query.offset``/``query.limit``.

        Each result is DICOM JSON holding the stored attributes of its level and the
        levels above it, the unique keys of every level down to its own, and the
        computed attributes of its level: NumberOfPatientRelatedStudies/Series/Instances
        (PATIENT), NumberOfStudyRelatedSeries/Instances and ModalitiesInStudy (STUDY),
        NumberOfSeriesRelatedInstances (SERIES), AvailableTransferSyntaxUID (IMAGE).
        Callers pick what to return and add what is theirs (URLs, availability).
        """

    def locate(
        self, level: Level, query: Query, scope: Scope = EVERYWHERE
    ) -> list[LocatedInstance]:
        """Every instance under the entities :meth:`search` would find (unpaged), ordered
        by study, series and instance number."""

    def close(self) -> None:
        """Release connections."""


def open_catalog(location: str, replace_old: bool = False) -> Catalog:
    """Open (creating its tables when missing) the catalog at ``location``: a path or
    ``sqlite:///path`` (SQLite), or ``postgresql://user:password@host/database``.
    Tables of another version are refused, or dropped with ``replace_old`` (for a
    rebuild: ``dicomflow cod reindex``).

    Raises:
        CatalogError: naming the ``catalog`` setting, for a location of another kind, a
            file that cannot be made, a server that does not answer or old tables.
    """
    if location.startswith(POSTGRES_SCHEMES):
        return open_postgres(location, replace_old)
    if location.startswith("sqlite:///"):
        return open_sqlite(location, Path(location.removeprefix("sqlite://")), replace_old)
    if "://" in location or not location.strip():
        raise CatalogError(
            f'The catalog setting "{redacted(location)}" is neither a file path, '
            "sqlite:///… nor postgresql://…."
        )
    return open_sqlite(location, Path(location), replace_old)


def default_catalog(datastore: str, data_directory: Path | None = None) -> str | None:
    """Where a datastore's catalog is by default: ``catalog.sqlite`` at the root of a
    local datastore (beside ``studies/``), else in ``data_directory`` (None without)."""
    local = datastore.removeprefix("file://") if datastore.startswith("file://") else datastore
    if "://" not in local:
        return str(Path(local).absolute() / CATALOG_NAME)
    return None if data_directory is None else str(data_directory.absolute() / CATALOG_NAME)


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
