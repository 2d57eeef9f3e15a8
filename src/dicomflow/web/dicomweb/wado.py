"""WADO-RS: instances, metadata, frames and bulk data from the archive (PS3.18 10.4).

Instances (``multipart/related; type="application/dicom"``, or one
``application/dicom`` body for one instance when that is asked) are served in
Explicit VR Little Endian unless the Accept header names another syntax:
``transfer-syntax=*`` gets the exact stored bytes, implicit VR little endian a
conversion (compressed pixel data decoded); any other transfer syntax gets 406.
Each part names its transfer syntax; in a study or series, an instance that
cannot be converted is sent as stored (the response has begun) with a log line.
Metadata is the stored DICOM JSON without file meta, its ``BulkDataURI``
pointing at this server. Frames are the raw pixel bytes of native transfer
syntaxes (``application/octet-stream``) or the stored fragments of encapsulated
ones, with their media type (``image/jpeg``, ``image/jp2``…), or, for
``type=application/octet-stream; transfer-syntax=*`` (cornerstone, OHIF), the
stored fragments labelled with their transfer syntax; ``application/octet-stream``
without a syntax gets compressed frames decoded to native pixels.
"""

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydicom import dcmread

from dicomflow.cod.query import ArchiveReader, SeriesDocument, instance_number
from dicomflow.dicom.keys import shorten
from dicomflow.web.dicomweb import multipart
from dicomflow.web.dicomweb.accept import (
    AS_STORED,
    EXPLICIT_LITTLE,
    accepts_multipart,
    accepts_single,
    frame_representation,
    instance_syntax,
    not_acceptable,
)
from dicomflow.web.dicomweb.pixels import (
    convert_instance,
    decoded_frames,
    frame_media_type,
    is_native,
    read_frames,
    transfer_syntax_of,
)
from dicomflow.web.dicomweb.resources import (
    instance_document,
    instance_url,
    read_instance,
    required_reader,
    series_document,
    study_documents,
)

logger = logging.getLogger(__name__)

router = APIRouter()

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
PREFIX = "/studies/{study}/series/{series}/instances/{instance}"
FRAME_NUMBER = re.compile(r"0*[1-9][0-9]{0,8}")
FRAME_LIST = re.compile(r"0*[1-9][0-9]{0,8}(,0*[1-9][0-9]{0,8})*")
TAG = re.compile(r"[0-9A-Fa-f]{8}")


@router.get("/studies/{study}")
def retrieve_study(request: Request, study: str) -> Response:
    documents = study_documents(request, study)
    return _instances_response(request, documents, None)


@router.get("/studies/{study}/series/{series}")
def retrieve_series(request: Request, study: str, series: str) -> Response:
    return _instances_response(request, [series_document(request, study, series)], None)


@router.get(PREFIX)
def retrieve_instance(request: Request, study: str, series: str, instance: str) -> Response:
    """One instance: multipart, or a single ``application/dicom`` body when that is asked."""
    document, uid = instance_document(request, study, series, instance)
    return _instances_response(request, [document], uid)


@router.get("/studies/{study}/metadata")
def study_metadata(request: Request, study: str) -> JSONResponse:
    return _metadata_response(request, study_documents(request, study), None)


@router.get("/studies/{study}/series/{series}/metadata")
def series_metadata(request: Request, study: str, series: str) -> JSONResponse:
    return _metadata_response(request, [series_document(request, study, series)], None)


@router.get(PREFIX + "/metadata")
def instance_metadata(request: Request, study: str, series: str, instance: str) -> JSONResponse:
    document, uid = instance_document(request, study, series, instance)
    return _metadata_response(request, [document], uid)


@router.get(PREFIX + "/frames/{frames}")
def retrieve_frames(
    request: Request, study: str, series: str, instance: str, frames: str
) -> StreamingResponse:
    document, uid = instance_document(request, study, series, instance)
    metadata = document.instances[uid].get("metadata", {})
    syntax = transfer_syntax_of(metadata)
    numbers = frame_numbers(frames, _frame_count(metadata), uid)
    served_syntax = EXPLICIT_LITTLE if is_native(syntax) else syntax
    chosen = frame_representation(request, frame_media_type(syntax), served_syntax)
    reader = required_reader(request)
    if chosen.decoded:
        contents = decoded_frames(read_instance(reader, document, uid), uid, numbers)
    else:
        contents = read_frames(reader, document, uid, numbers)
    return _multipart(((chosen.part_type, content) for content in contents), chosen.media_type)


@router.get(PREFIX + "/bulkdata/{tag}")
def retrieve_bulkdata(
    request: Request, study: str, series: str, instance: str, tag: str
) -> StreamingResponse:
    document, uid = instance_document(request, study, series, instance)
    if not TAG.fullmatch(tag):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f'Path parameter tag "{shorten(tag)}" is not a tag of 8 hexadecimal digits.',
        )
    wanted = tag.upper()
    if not accepts_multipart(request, OCTET_STREAM, set(), OCTET_STREAM):
        raise not_acceptable(f'multipart/related; type="{OCTET_STREAM}"')
    data = read_instance(required_reader(request), document, uid)
    value = bulk_value(data, int(wanted, 16))
    if value is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f'Instance "{uid}" has no bulk data {wanted}.'
        )
    return _multipart(iter([(OCTET_STREAM, value)]), OCTET_STREAM)


def frame_numbers(text: str, count: int, uid: str) -> list[int]:
    """The 1-based frame numbers of a ``frames`` path parameter; 400 or 404 if wrong."""
    pieces = text.split(",")
    if not all(FRAME_NUMBER.fullmatch(piece.strip()) for piece in pieces):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f'Path parameter frames "{shorten(text)}" is not a list of frame numbers from 1.',
        )
    numbers = [int(piece) for piece in pieces]
    if max(numbers) > count:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f'Instance "{uid}" has {count} frame(s); frame {max(numbers)} requested.',
        )
    return numbers


def bulk_value(data: bytes, tag: int) -> bytes | None:
    """The value of the first element with ``tag`` (top level first, then nested)."""
    ds = dcmread(io.BytesIO(data), force=True)
    pending = [ds]
    while pending:
        dataset = pending.pop(0)
        if tag in dataset:
            value = dataset[tag].value
            return value if isinstance(value, bytes) else None
        for element in dataset:
            if element.VR == "SQ":
                pending.extend(element.value)
    return None


def _frame_count(metadata: dict[str, Any]) -> int:
    if "7FE00010" not in metadata:
        return 0
    values = metadata.get("00280008", {}).get("Value") or [1]
    try:
        return max(int(values[0]), 1)
    except (TypeError, ValueError):
        return 1


def _instances_response(
    request: Request, documents: list[SeriesDocument], only: str | None
) -> Response:
    selected = [
        (document, uid)
        for document in documents
        for uid, _ in _ordered(document)
        if only in (None, uid)
    ]
    syntaxes = {_stored_syntax(d, uid) for d, uid in selected}
    syntax, single = instance_syntax(request, syntaxes, DICOM)
    reader = required_reader(request)
    if only is not None:  # read before answering: a failure still gets its status
        part_type, data = _instance_part(reader, *selected[0], syntax, fallback=False)
        if single:
            return Response(data, media_type=DICOM)
        return _multipart(iter([(part_type, data)]), DICOM)
    parts = (_instance_part(reader, d, uid, syntax, fallback=True) for d, uid in selected)
    return _multipart(parts, DICOM)


def _stored_syntax(document: SeriesDocument, uid: str) -> str:
    return transfer_syntax_of(document.instances[uid].get("metadata", {}))


def _instance_part(
    reader: ArchiveReader, document: SeriesDocument, uid: str, syntax: str, fallback: bool
) -> tuple[str, bytes]:
    """The part type and bytes of an instance in ``syntax`` (or as stored). With
    ``fallback`` (the response has begun, a 406 can no longer be sent) an instance that
    cannot be converted is sent as stored, its part type naming its syntax, with a log
    line."""
    data = read_instance(reader, document, uid)
    stored = _stored_syntax(document, uid)
    if syntax in (AS_STORED, stored):
        return f"{DICOM}; transfer-syntax={stored}", data
    try:
        return f"{DICOM}; transfer-syntax={syntax}", convert_instance(data, syntax)
    except HTTPException as exc:
        if not fallback:
            raise
        logger.warning("instance %s sent as stored: %s", uid, exc.detail)
        return f"{DICOM}; transfer-syntax={stored}", data


def _metadata_response(
    request: Request, documents: list[SeriesDocument], only: str | None
) -> JSONResponse:
    accepts_single(request, DICOM_JSON, "application/json")
    results = [
        served_metadata(request, document, uid, record.get("metadata", {}))
        for document in documents
        for uid, record in _ordered(document)
        if only in (None, uid)
    ]
    return JSONResponse(results, media_type=DICOM_JSON)


def served_metadata(
    request: Request, document: SeriesDocument, uid: str, metadata: dict[str, Any]
) -> dict[str, Any]:
    """Stored DICOM JSON without file meta, bulk data pointing at this server."""
    url = instance_url(request, document.study_uid, document.series_uid, uid)
    return _rewrite({t: e for t, e in metadata.items() if not t.startswith("0002")}, url)


def _rewrite(dataset: dict[str, Any], url: str) -> dict[str, Any]:
    rewritten: dict[str, Any] = {}
    for tag, element in dataset.items():
        if "BulkDataURI" in element:
            element = {**element, "BulkDataURI": f"{url}/bulkdata/{tag}"}
        elif element.get("vr") == "SQ" and element.get("Value"):
            items = [_rewrite(item, url) for item in element["Value"]]
            element = {**element, "Value": items}
        rewritten[tag] = element
    return rewritten


def _ordered(document: SeriesDocument) -> list[tuple[str, Any]]:
    return sorted(document.instances.items(), key=lambda i: (instance_number(i[1]), i[0]))


def _multipart(parts: Iterator[tuple[str, bytes]], part_type: str) -> StreamingResponse:
    boundary = multipart.new_boundary()
    return StreamingResponse(
        multipart.encode(parts, boundary),
        media_type=multipart.content_type(part_type, boundary),
    )
