"""The archive: studies (listed from the catalog, a page at a time), their series and
instances (with thumbnails from DICOMweb), and releasing a series lock left by a writer
that died."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dicomflow.cod import CODObject, list_series
from dicomflow.cod.catalog import Catalog, Level
from dicomflow.cod.catalog_sql import SQLCatalog
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.cod.locker import Locker
from dicomflow.dicom.matching import DicomJson, Query
from dicomflow.errors import DicomflowError
from dicomflow.web.dicomweb.resources import archive_catalog, catalog_call
from dicomflow.web.privacy import hashed, json_identifiers, json_value
from dicomflow.web.views import (
    ago,
    answer,
    bad_request,
    check_uid,
    context_of,
    not_found,
    render,
    shows_identifiers,
)

logger = logging.getLogger(__name__)

router = APIRouter()

PAGE_SIZE = 50  # studies per page
CONFIRM = "release"


def _datastore(request: Request) -> str:
    datastore = context_of(request).archive_datastore
    if datastore is None:
        raise not_found("This node has no archive (archive_datastore is not set).")
    return datastore


def _summary(metadata: dict[str, Any], show: bool) -> dict[str, Any]:
    """What a study or series shows of its first instance's header."""
    return {
        "patient": hashed(json_value(metadata, "PatientID")),
        "identifiers": json_identifiers(metadata, show),
        "study_date": json_value(metadata, "StudyDate"),
        "study_description": json_value(metadata, "StudyDescription"),
        "series_description": json_value(metadata, "SeriesDescription"),
        "modality": json_value(metadata, "Modality"),
    }


def series_info(datastore: str, study: str, series: str, show: bool) -> dict[str, Any]:
    """A series: instance count, header summary and lock state."""
    info: dict[str, Any] = {"study": study, "uid": series, "instances": 0, "error": ""}
    info |= _summary({}, show) | lock_state(datastore, study, series)
    try:
        cod = CODObject(datastore_path=datastore, study_uid=study, series_uid=series, lock=False)
        uids = cod.list_instances()
        first = cod.instance_metadata(uids[0])["metadata"] if uids else {}
    except (DicomflowError, OSError, ValueError) as exc:
        return info | {"error": str(exc)}
    return info | _summary(first, show) | {"instances": len(uids)}


def lock_state(datastore: str, study: str, series: str) -> dict[str, Any]:
    """Whether the series is locked, by which generation, since when."""
    fs, root = open_datastore(datastore)
    path = SeriesLayout(root, study, series).lock
    holder = Locker(fs, path).holder()
    if holder is None:
        return {"locked": False, "lock_generation": "", "locked_since": ""}
    try:
        info = fs.info(path)
        since = info.get("mtime") or info.get("created")
        age = ago(float(since.timestamp() if hasattr(since, "timestamp") else since))
    except (OSError, TypeError, ValueError):
        age = ""
    return {"locked": True, "lock_generation": holder[:40], "locked_since": age}


def studies(
    catalog: Catalog, show: bool, offset: int = 0, limit: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], int]:
    """The studies ``offset`` to ``offset + limit`` (in UID order) with their series
    count and header summary (of their first series), and how many studies the archive
    holds, from the catalog."""
    page = catalog_call(lambda: catalog.search(Level.STUDY, Query(limit=limit, offset=offset)))
    total = catalog_call(lambda: _count(catalog))
    return [_study_row(study, show) for study in page], total


def _count(catalog: Catalog, level: Level = Level.STUDY) -> int:
    if isinstance(catalog, SQLCatalog):
        return catalog.count(level)
    return len(catalog.search(level, Query()))


def _study_row(study: DicomJson, show: bool) -> dict[str, Any]:
    return {
        **_summary(study, show),
        "uid": json_value(study, "StudyInstanceUID"),
        "series": int(json_value(study, "NumberOfStudyRelatedSeries") or 0),
        "instances": int(json_value(study, "NumberOfStudyRelatedInstances") or 0),
        "first_series": json_value(study, "SeriesInstanceUID"),
    }


def _page(offset: int, limit: int) -> None:
    if offset < 0:
        raise bad_request("offset must be 0 or more.")
    if not 1 <= limit <= 500:
        raise bad_request("limit must be between 1 and 500.")


def study_series(datastore: str, study: str, show: bool) -> list[dict[str, Any]]:
    return [series_info(datastore, study, uid, show) for uid in list_series(datastore, study)]


def instances(datastore: str, study: str, series: str) -> list[dict[str, Any]]:
    """Each instance of a series: its UID, number, size and SOP class."""
    try:
        cod = CODObject(datastore_path=datastore, study_uid=study, series_uid=series, lock=False)
    except (DicomflowError, OSError) as exc:
        raise not_found(f"Series {series}: {exc}") from None
    found: list[dict[str, Any]] = []
    for uid in cod.list_instances():
        record = cod.instance_metadata(uid)
        metadata = record["metadata"]
        number = json_value(metadata, "InstanceNumber")
        found.append(
            {
                "uid": uid,
                "number": number,
                "size": record.get("size", 0),
                "sop_class": json_value(metadata, "SOPClassUID"),
            }
        )
    return sorted(found, key=lambda item: (_number(item["number"]), item["uid"]))


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("inf")


@router.get("/archive", response_class=HTMLResponse)
def archive_page(request: Request, offset: int = 0, limit: int = PAGE_SIZE) -> HTMLResponse:
    _page(offset, limit)
    datastore = context_of(request).archive_datastore
    catalog = archive_catalog(request)
    show = shows_identifiers(request)
    found, total = studies(catalog, show, offset, limit) if catalog else ([], 0)
    values = {"datastore": datastore, "studies": found, "total": total}
    values |= {"offset": offset, "limit": limit}
    return render(request, "archive.html", values)


@router.get("/api/archive/studies")
def studies_json(request: Request, offset: int = 0, limit: int = PAGE_SIZE) -> JSONResponse:
    """``{"studies": [{"uid", "series", "modality", "study_date", ...}], "total": n}``,
    one page (``offset``, ``limit``) at a time."""
    _page(offset, limit)
    _datastore(request)
    catalog = archive_catalog(request)
    assert catalog is not None  # there is an archive
    found, total = studies(catalog, shows_identifiers(request), offset, limit)
    return JSONResponse({"studies": found, "total": total, "offset": offset})


@router.get("/api/archive/patients")
def patients_json(request: Request, offset: int = 0, limit: int = PAGE_SIZE) -> JSONResponse:
    """``{"patients": [{"patient", "identifiers", "studies", "series", "instances"}],
    "total": n}``, one page (``offset``, ``limit``) at a time, from the catalog."""
    _page(offset, limit)
    _datastore(request)
    catalog = archive_catalog(request)
    assert catalog is not None  # there is an archive
    query = Query(limit=limit, offset=offset)
    page = catalog_call(lambda: catalog.search(Level.PATIENT, query))
    total = catalog_call(lambda: _count(catalog, Level.PATIENT))
    show = shows_identifiers(request)
    found = [_patient_row(patient, show) for patient in page]
    return JSONResponse({"patients": found, "total": total, "offset": offset})


def _patient_row(patient: DicomJson, show: bool) -> dict[str, Any]:
    return {
        "patient": hashed(json_value(patient, "PatientID")),
        "identifiers": json_identifiers(patient, show),
        "studies": int(json_value(patient, "NumberOfPatientRelatedStudies") or 0),
        "series": int(json_value(patient, "NumberOfPatientRelatedSeries") or 0),
        "instances": int(json_value(patient, "NumberOfPatientRelatedInstances") or 0),
    }


@router.get("/archive/studies/{study}", response_class=HTMLResponse)
def study_page(request: Request, study: str) -> HTMLResponse:
    check_uid(study, "StudyInstanceUID")
    found = study_series(_datastore(request), study, shows_identifiers(request))
    if not found:
        raise not_found(f"The archive has no study {study}.")
    return render(request, "study.html", {"study": study, "series": found})


@router.get("/api/archive/studies/{study}")
def study_json(request: Request, study: str) -> JSONResponse:
    """``{"series": [{"uid", "instances", "locked", ...}]}``."""
    check_uid(study, "StudyInstanceUID")
    return JSONResponse(
        {"series": study_series(_datastore(request), study, shows_identifiers(request))}
    )


def _series(request: Request, study: str, series: str) -> tuple[dict[str, Any], list[Any]]:
    check_uid(study, "StudyInstanceUID")
    check_uid(series, "SeriesInstanceUID")
    datastore = _datastore(request)
    if series not in list_series(datastore, study):
        raise not_found(f"The archive has no series {series} in study {study}.")
    info = series_info(datastore, study, series, shows_identifiers(request))
    return info, instances(datastore, study, series)


@router.get("/archive/studies/{study}/series/{series}", response_class=HTMLResponse)
def series_page(request: Request, study: str, series: str) -> HTMLResponse:
    info, found = _series(request, study, series)
    return render(request, "series.html", {"series": info, "instances": found})


@router.get("/api/archive/studies/{study}/series/{series}")
def series_json(request: Request, study: str, series: str) -> JSONResponse:
    """``{"series": {...lock state...}, "instances": [{"uid", "number", "size"}]}``."""
    info, found = _series(request, study, series)
    return JSONResponse({"series": info, "instances": found})


@router.get("/archive/studies/{study}/series/{series}/unlock", response_class=HTMLResponse)
def unlock_form(request: Request, study: str, series: str) -> HTMLResponse:
    info, _ = _series(request, study, series)
    return render(request, "unlock.html", {"series": info, "confirm": CONFIRM})


@router.post("/archive/studies/{study}/series/{series}/unlock")
def unlock(
    request: Request, study: str, series: str, confirm: Annotated[str, Form()] = ""
) -> Response:
    """Remove a hanging series lock; the form must carry ``confirm=release``."""
    check_uid(study, "StudyInstanceUID")
    check_uid(series, "SeriesInstanceUID")
    if confirm != CONFIRM:
        raise bad_request(f'Releasing a lock needs the confirmation field confirm="{CONFIRM}".')
    fs, root = open_datastore(_datastore(request))
    path = SeriesLayout(root, study, series).lock
    back = f"/archive/studies/{study}/series/{series}"
    if Locker(fs, path).holder() is None:
        return answer(request, back, f"Series {series} has no lock.", ok=False)
    fs.rm(path)
    logger.warning("series %s: lock released from the dashboard", series)
    return answer(request, back, f"The lock of series {series} is released.")
