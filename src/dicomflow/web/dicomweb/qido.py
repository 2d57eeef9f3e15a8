"""QIDO-RS: search the archive's studies, series and instances (PS3.18 10.6).

Answers come from the archive's catalog (:mod:`dicomflow.cod.catalog`), which
matches the keys (PS3.4 C.2.2.2) and pages; this module adds what is the web's
(RetrieveURL, InstanceAvailability) and picks the attributes returned. Keys on those
two attributes are matched here, so the paging is then done here too. Without an
archive every search has no results.
"""

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from dicomflow.cod.catalog import Level, Scope
from dicomflow.dicom.matching import DicomJson, Query, parse_query
from dicomflow.errors import QueryKeyError
from dicomflow.web.dicomweb.accept import accepts_single
from dicomflow.web.dicomweb.resources import (
    archive_catalog,
    catalog_call,
    checked_uid,
    instance_url,
    series_url,
    study_url,
)

router = APIRouter()

DICOM_JSON = "application/dicom+json"
PATIENT = {"00100010", "00100020", "00100030", "00100040"}
STUDY = {
    *PATIENT,
    "00080005", "00080020", "00080030", "00080050", "00080056", "00080061", "00080090",
    "00080201", "00081030", "00081190", "0020000D", "00200010", "00201206", "00201208",
}  # fmt: skip
STUDY_STORED = STUDY - {"00080056", "00080061", "00081190", "00201206", "00201208"}
SERIES = {
    "00080005", "00080021", "00080031", "00080056", "00080060", "00080201", "0008103E",
    "00081190", "00180015", "0020000D", "0020000E", "00200011", "00201209", "00400244",
    "00400245", "00400275",
}  # fmt: skip
SERIES_STORED = SERIES - {"00080056", "00081190", "00201209"}
INSTANCE = {
    "00080005", "00080016", "00080018", "00080056", "00080201", "00081190", "00083002",
    "0020000D", "0020000E", "00200013", "00280008", "00280010", "00280011", "00280100",
}  # fmt: skip
ONLINE = {"vr": "CS", "Value": ["ONLINE"]}


OURS = {"00080056", "00081190"}  # InstanceAvailability, RetrieveURL: matched here


@router.get("/studies")
def search_studies(request: Request) -> JSONResponse:
    return _search(request, Level.STUDY, Scope(), STUDY)


@router.get("/series")
def search_all_series(request: Request) -> JSONResponse:
    return _search(request, Level.SERIES, Scope(), SERIES | STUDY_STORED)


@router.get("/studies/{study}/series")
def search_study_series(request: Request, study: str) -> JSONResponse:
    return _search(request, Level.SERIES, Scope(checked_uid(study, "StudyInstanceUID")), SERIES)


@router.get("/instances")
def search_all_instances(request: Request) -> JSONResponse:
    returned = INSTANCE | SERIES_STORED | STUDY_STORED
    return _search(request, Level.IMAGE, Scope(), returned)


@router.get("/studies/{study}/instances")
def search_study_instances(request: Request, study: str) -> JSONResponse:
    scope = Scope(checked_uid(study, "StudyInstanceUID"))
    return _search(request, Level.IMAGE, scope, INSTANCE | SERIES_STORED)


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(request: Request, study: str, series: str) -> JSONResponse:
    checked_uid(study, "StudyInstanceUID")
    scope = Scope(study, checked_uid(series, "SeriesInstanceUID"))
    return _search(request, Level.IMAGE, scope, INSTANCE)


def _search(request: Request, level: Level, scope: Scope, returned: set[str]) -> JSONResponse:
    query = _query(request)
    catalog = archive_catalog(request)
    if catalog is None:
        return _answer([])
    ours = [key for key in query.keys if key.tag in OURS and key.value not in ("", "*")]
    asked = query
    if ours:  # the catalog cannot match these: it returns every candidate, unpaged
        kept = [key for key in query.keys if key not in ours]
        asked = Query(kept, query.include, query.include_all)
    found = catalog_call(lambda: catalog.search(level, asked, scope))
    results = []
    for item in found:
        candidate = {**item, **_web_attributes(request, level, item)}
        if all(key.matches(candidate) for key in ours):
            results.append(_pick(candidate, returned, query))
    return _answer(query.page(results) if ours else results)


def _query(request: Request) -> Query:
    accepts_single(request, DICOM_JSON, "application/json")
    try:
        return parse_query(request.query_params.multi_items())
    except QueryKeyError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


def _web_attributes(request: Request, level: Level, item: DicomJson) -> DicomJson:
    """InstanceAvailability and RetrieveURL of a result."""
    study = _uid(item, "0020000D")
    if level is Level.STUDY:
        url = study_url(request, study)
    elif level is Level.SERIES:
        url = series_url(request, study, _uid(item, "0020000E"))
    else:
        url = instance_url(request, study, _uid(item, "0020000E"), _uid(item, "00080018"))
    return {"00080056": ONLINE, "00081190": {"vr": "UR", "Value": [url]}}


def _uid(item: DicomJson, tag: str) -> str:
    return str(item[tag]["Value"][0])


def _pick(candidate: DicomJson, returned: set[str], query: Query) -> DicomJson:
    """The result dataset: the level's attributes, the matching keys and includefields."""
    if query.include_all:
        tags = set(candidate)
    else:
        tags = (returned | query.key_tags() | query.include) & set(candidate)
    return {tag: candidate[tag] for tag in sorted(tags)}


def _answer(results: list[DicomJson]) -> JSONResponse:
    return JSONResponse(results, media_type=DICOM_JSON)
