"""Rebuilding a catalog from its datastore (``dicomflow cod reindex``).

Every series' ``metadata.json`` is read (in threads: object stores answer each read
slowly but many at once) and recorded, in batches of one transaction each; catalogued
series whose metadata is gone are forgotten. Safe while archive jobs write: a series
whose metadata appears meanwhile is recorded by its job; one catalogued with more
instances than the document read here holds is kept; a series is forgotten only if
its metadata is still missing when checked again.
"""

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fsspec import AbstractFileSystem  # type: ignore[import-untyped]

from dicomflow.cod.catalog_sql import SQLCatalog
from dicomflow.cod.layout import METADATA_NAME, SeriesLayout, open_datastore
from dicomflow.cod.query import SeriesDocument
from dicomflow.dicom.keys import is_valid_uid

logger = logging.getLogger(__name__)

BATCH = 200
SeriesKey = tuple[str, str]


@dataclass
class ReindexReport:
    """What a rebuild did."""

    found: int = 0
    recorded: int = 0
    forgotten: int = 0
    errors: list[str] = field(default_factory=list)


def series_with_metadata(fs: AbstractFileSystem, root: str) -> list[SeriesKey]:
    """Every (study, series) of the datastore with a ``metadata.json``, from one recursive
    listing, sorted."""
    fs.invalidate_cache()
    try:
        names = fs.find(f"{root}/studies")
    except FileNotFoundError:
        return []
    found = set()
    for name in names:
        parts = str(name).rstrip("/").split("/")
        if len(parts) >= 5 and parts[-1] == METADATA_NAME and parts[-3] == "series":
            study, series = parts[-4], parts[-2]
            if parts[-5] == "studies" and is_valid_uid(study) and is_valid_uid(series):
                found.add((study, series))
    return sorted(found)


def reindex(
    datastore: str,
    catalog: SQLCatalog,
    threads: int = 16,
    advance: Callable[[int], None] = lambda _: None,
    started: Callable[[int], None] = lambda _: None,
) -> ReindexReport:
    """Record every series of ``datastore`` in ``catalog`` and forget the ones gone;
    ``started(total)`` then ``advance(count)`` report progress."""
    fs, root = open_datastore(datastore)
    keys = series_with_metadata(fs, root)
    report = ReindexReport(found=len(keys))
    started(len(keys))
    batch: list[SeriesDocument] = []
    for document in _documents(fs, root, keys, threads, report):
        batch.append(document)
        if len(batch) >= BATCH:
            report.recorded += catalog.record_many(batch, keep_larger=True)
            advance(len(batch))
            batch = []
    report.recorded += catalog.record_many(batch, keep_larger=True)
    advance(len(batch))
    present = set(keys)
    for study, series in catalog.catalogued_series():
        if (study, series) not in present and not fs.exists(_metadata(root, study, series)):
            catalog.forget(study, series)
            report.forgotten += 1
    return report


def _documents(
    fs: AbstractFileSystem, root: str, keys: list[SeriesKey], threads: int, report: ReindexReport
) -> Iterator[SeriesDocument]:
    """The documents of ``keys``, read ``BATCH`` at a time (memory stays bounded)."""
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for start in range(0, len(keys), BATCH):
            chunk = keys[start : start + BATCH]
            for key, loaded in zip(
                chunk, pool.map(lambda k: _load(fs, root, *k), chunk), strict=True
            ):
                if isinstance(loaded, SeriesDocument):
                    yield loaded
                elif loaded is not None:
                    report.errors.append(f'Series "{key[1]}" of study "{key[0]}": {loaded}')


def _load(
    fs: AbstractFileSystem, root: str, study: str, series: str
) -> SeriesDocument | str | None:
    """The series' document, None if its metadata vanished, or why it cannot be read."""
    try:
        content = json.loads(fs.cat_file(_metadata(root, study, series)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"metadata cannot be read: {exc}"
    instances = content.get("cod", {}).get("instances", {}) if isinstance(content, dict) else {}
    if not isinstance(instances, dict):
        return "metadata has no instance records"
    return SeriesDocument(study, series, dict(instances))


def _metadata(root: str, study: str, series: str) -> str:
    return SeriesLayout(root, study, series).metadata
