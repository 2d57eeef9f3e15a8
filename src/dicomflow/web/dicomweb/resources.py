"""What every DICOMweb route needs: the archive reader and catalog, checked UIDs and URLs.

Searches, and the series of a study, come from the archive's catalog (see
:mod:`dicomflow.cod.catalog`; one connection per process, no per-series state);
the records and bytes of a series from its metadata and tar (:class:`ArchiveReader`,
which keeps the few most recently used). Path parameters are checked against the
DICOM UID grammar before anything else (HTTP 400 naming the parameter); unknown
UIDs give 404; a node without an archive answers searches with no results and
retrievals with 404; a catalog that fails, 503. A series whose metadata holds no
instance (what a failed archive write leaves) is not archived for any route.
"""

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException, Request, status

from dicomflow.cod.catalog import Catalog, Level, Scope, open_catalog
from dicomflow.cod.query import ArchiveReader, SeriesDocument
from dicomflow.dicom.keys import is_valid_uid, shorten
from dicomflow.dicom.matching import Query
from dicomflow.errors import CatalogError, CODIntegrityError, CODNotFoundError
from dicomflow.web.context import WebContext

logger = logging.getLogger(__name__)

NO_ARCHIVE = "This node has no archive: set archive_datastore to serve DICOMweb retrievals."
ROUTE_PREFIX = "/dicomweb"
READER_STATE = "dicomweb_archive_reader"
CATALOG_STATE = "archive_catalog"
_opening = threading.Lock()
Answer = TypeVar("Answer")


def archive_reader(request: Request) -> ArchiveReader | None:
    """Return the reader of the node's archive (kept on the app), or None without one."""
    context: WebContext = request.app.state.context
    datastore = context.archive_datastore
    if not datastore:
        return None
    reader: ArchiveReader | None = getattr(request.app.state, READER_STATE, None)
    if reader is None or reader.datastore != datastore:
        reader = ArchiveReader(datastore)
        setattr(request.app.state, READER_STATE, reader)
    return reader


def archive_catalog(request: Request) -> Catalog | None:
    """The archive's catalog (opened once per app), or None without an archive.

    Raises:
        HTTPException: 503 naming the catalog setting when it cannot be opened.
    """
    context: WebContext = request.app.state.context
    location = context.settings.catalog_location()
    if location is None:
        return None
    with _opening:
        opened: tuple[str, Catalog] | None = getattr(request.app.state, CATALOG_STATE, None)
        if opened is None or opened[0] != location:
            catalog = catalog_call(lambda: open_catalog(location))
            opened = (location, catalog)
            setattr(request.app.state, CATALOG_STATE, opened)
    return opened[1]


def catalog_call(call: Callable[[], Answer]) -> Answer:
    """``call()``; a catalog that fails (a database server down) gives 503 naming it."""
    try:
        return call()
    except CatalogError as exc:
        logger.error("archive catalog: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


def study_series_uids(request: Request, study: str) -> list[str]:
    """The catalogued series of a study, in UID order."""
    catalog = archive_catalog(request)
    if catalog is None:
        return []
    found = catalog_call(lambda: catalog.search(Level.SERIES, Query(), Scope(study)))
    return [str(item["0020000E"]["Value"][0]) for item in found]


def required_reader(request: Request) -> ArchiveReader:
    """The archive reader; 404 when the node has no archive."""
    reader = archive_reader(request)
    if reader is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NO_ARCHIVE)
    return reader


def checked_uid(value: str, name: str) -> str:
    """Return ``value`` if it is a DICOM UID; else 400 naming the path parameter."""
    if not is_valid_uid(value):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f'Path parameter {name} "{shorten(value)}" is not a valid DICOM UID.',
        )
    return value


def series_document(request: Request, study: str, series: str) -> SeriesDocument:
    """The records of a series; 400 for non-UIDs, 404 when it is not archived."""
    checked_uid(study, "StudyInstanceUID")
    checked_uid(series, "SeriesInstanceUID")
    document = required_reader(request).document(study, series)
    if document is None or not document.instances:  # none, or left empty by a failed write
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f'Study "{study}" has no archived series "{series}".'
        )
    return document


def instance_document(
    request: Request, study: str, series: str, instance: str
) -> tuple[SeriesDocument, str]:
    """The records of the series holding an instance, and its UID (400 first, then 404)."""
    checked_uid(instance, "SOPInstanceUID")
    document = series_document(request, study, series)
    return document, instance_in(document, instance)


def study_documents(request: Request, study: str) -> list[SeriesDocument]:
    """The records of every series of a study (the catalog lists them); 404 when none is
    archived."""
    checked_uid(study, "StudyInstanceUID")
    reader = required_reader(request)
    loaded = [reader.document(study, series) for series in study_series_uids(request, study)]
    documents = [d for d in loaded if d is not None and d.instances]
    if not documents:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f'No archived study "{study}".')
    return documents


def instance_in(document: SeriesDocument, instance: str) -> str:
    """``instance`` if the series holds it; 400 for a non-UID, 404 when absent."""
    checked_uid(instance, "SOPInstanceUID")
    if instance not in document.instances:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f'Series "{document.series_uid}" has no archived instance "{instance}".',
        )
    return instance


def read_instance(reader: ArchiveReader, document: SeriesDocument, instance: str) -> bytes:
    """An instance's bytes; 404 if it vanished, 500 with the reason if they are corrupt."""
    try:
        return reader.instance_bytes(document, instance)
    except CODNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except (CODIntegrityError, OSError) as exc:
        logger.error("instance %s cannot be read: %s", instance, exc)
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None


def base_url(request: Request) -> str:
    """The absolute URL of the DICOMweb root (``…/dicomweb``), from the Host header.

    A Host header naming the server's own address without a port (dicomweb-client
    sends one) gets the port the server listens on.
    """
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and url.hostname == server[0] and server[1]:
        url = url.replace(port=int(server[1]))
    return str(url).rstrip("/") + ROUTE_PREFIX


def study_url(request: Request, study: str) -> str:
    return f"{base_url(request)}/studies/{study}"


def series_url(request: Request, study: str, series: str) -> str:
    return f"{study_url(request, study)}/series/{series}"


def instance_url(request: Request, study: str, series: str, instance: str) -> str:
    return f"{series_url(request, study, series)}/instances/{instance}"
