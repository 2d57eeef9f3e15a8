"""QIDO-RS: search the archive's studies, series and instances (PS3.18 10.6).

Answers come from metadata.json alone (see :mod:`dicomflow.cod.query`): study and
series searches read only the series summaries, instance searches the records of
the series that pass the study and series keys. Without an archive every search
has no results.
"""

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse

from dicomflow.cod.query import SeriesSummary, instance_number, plain_attributes
from dicomflow.dicom.matching import DicomJson, Query, parse_query
from dicomflow.errors import QueryKeyError
from dicomflow.web.dicomweb.accept import accepts_single
from dicomflow.web.dicomweb.resources import (
    archive_reader,
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


@router.get("/studies")
def search_studies(request: Request) -> JSONResponse:
    query = _query(request)
    by_study: dict[str, list[SeriesSummary]] = defaultdict(list)
    for summary in _summaries(request):
        by_study[summary.study_uid].append(summary)
    results = []
    for study_uid, series in by_study.items():
        computed = _study_computed(request, study_uid, series)
        if any(query.matches({**s.attributes, **computed}) for s in series):
            results.append(_pick({**series[0].attributes, **computed}, STUDY, query))
    return _answer(query.page(results))


@router.get("/series")
def search_all_series(request: Request) -> JSONResponse:
    return _search_series(request, None)


@router.get("/studies/{study}/series")
def search_study_series(request: Request, study: str) -> JSONResponse:
    return _search_series(request, checked_uid(study, "StudyInstanceUID"))


@router.get("/instances")
def search_all_instances(request: Request) -> JSONResponse:
    return _search_instances(request, None, None)


@router.get("/studies/{study}/instances")
def search_study_instances(request: Request, study: str) -> JSONResponse:
    return _search_instances(request, checked_uid(study, "StudyInstanceUID"), None)


@router.get("/studies/{study}/series/{series}/instances")
def search_series_instances(request: Request, study: str, series: str) -> JSONResponse:
    checked_uid(study, "StudyInstanceUID")
    return _search_instances(request, study, checked_uid(series, "SeriesInstanceUID"))


def _search_series(request: Request, study: str | None) -> JSONResponse:
    query = _query(request)
    returned = SERIES | (STUDY_STORED if study is None else set())
    results = []
    for summary in _summaries(request, study):
        candidate = {**summary.attributes, **_series_computed(request, summary)}
        if query.matches(candidate):
            results.append(_pick(candidate, returned, query))
    return _answer(query.page(results))


def _search_instances(request: Request, study: str | None, series: str | None) -> JSONResponse:
    query = _query(request)
    reader = archive_reader(request)
    returned = INSTANCE | (SERIES_STORED if series is None else set())
    returned |= STUDY_STORED if study is None else set()
    prefilter = query.key_tags() - STUDY_STORED - SERIES_STORED
    results: list[DicomJson] = []
    for summary in _summaries(request, study):
        if series not in (None, summary.series_uid) or not query.matches(
            summary.attributes, skip=prefilter
        ):
            continue
        document = reader.document(summary.study_uid, summary.series_uid) if reader else None
        records = document.instances.items() if document else []
        for uid, record in sorted(records, key=lambda item: (instance_number(item[1]), item[0])):
            candidate = _instance_candidate(request, summary, uid, record.get("metadata", {}))
            if query.matches(candidate):
                results.append(_pick(candidate, returned, query))
        if query.limit is not None and len(results) >= query.offset + query.limit:
            break
    return _answer(query.page(results))


def _query(request: Request) -> Query:
    accepts_single(request, DICOM_JSON, "application/json")
    try:
        return parse_query(request.query_params.multi_items())
    except QueryKeyError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


def _summaries(request: Request, study: str | None = None) -> list[SeriesSummary]:
    """The series with at least one archived instance (a failed archive write can leave
    a series' metadata without any)."""
    reader = archive_reader(request)
    summaries = reader.summaries(study) if reader is not None else []
    return [summary for summary in summaries if summary.instance_count > 0]


def _study_computed(request: Request, study: str, series: list[SeriesSummary]) -> DicomJson:
    modalities = sorted({s.modality for s in series if s.modality})
    computed: DicomJson = {
        "0020000D": {"vr": "UI", "Value": [study]},
        "00080056": ONLINE,
        "00081190": {"vr": "UR", "Value": [study_url(request, study)]},
        "00201206": {"vr": "IS", "Value": [len(series)]},
        "00201208": {"vr": "IS", "Value": [sum(s.instance_count for s in series)]},
    }
    computed["00080061"] = {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"}
    return computed


def _series_computed(request: Request, summary: SeriesSummary) -> DicomJson:
    url = series_url(request, summary.study_uid, summary.series_uid)
    return {
        "0020000D": {"vr": "UI", "Value": [summary.study_uid]},
        "0020000E": {"vr": "UI", "Value": [summary.series_uid]},
        "00080056": ONLINE,
        "00081190": {"vr": "UR", "Value": [url]},
        "00201209": {"vr": "IS", "Value": [summary.instance_count]},
    }


def _instance_candidate(
    request: Request, summary: SeriesSummary, uid: str, metadata: DicomJson
) -> DicomJson:
    syntax = metadata.get("00020010", {}).get("Value")
    url = instance_url(request, summary.study_uid, summary.series_uid, uid)
    candidate = {**summary.attributes, **plain_attributes(metadata)}
    candidate["0020000D"] = {"vr": "UI", "Value": [summary.study_uid]}
    candidate["0020000E"] = {"vr": "UI", "Value": [summary.series_uid]}
    candidate["00080018"] = {"vr": "UI", "Value": [uid]}
    candidate["00080056"] = ONLINE
    candidate["00081190"] = {"vr": "UR", "Value": [url]}
    if syntax:
        candidate["00083002"] = {"vr": "UI", "Value": list(syntax)}
    return candidate


def _pick(candidate: DicomJson, returned: set[str], query: Query) -> DicomJson:
    """The result dataset: the level's attributes, the matching keys and includefields."""
    if query.include_all:
        tags = set(candidate)
    else:
        tags = (returned | query.key_tags() | query.include) & set(candidate)
    return {tag: candidate[tag] for tag in sorted(tags)}


def _answer(results: list[Any]) -> JSONResponse:
    return JSONResponse(results, media_type=DICOM_JSON)
