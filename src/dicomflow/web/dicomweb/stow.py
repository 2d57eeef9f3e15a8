"""STOW-RS: store uploaded instances into the node like C-STOREs (PS3.18 10.5).

The body (``multipart/related; type="application/dicom"``) is streamed to a
temporary file in the data directory (at most ``MAX_UPLOAD_BYTES``, else 413),
then each part goes to :meth:`Node.receive`. One bad part never stops the
others: the response lists stored instances in ReferencedSOPSequence and the
others in FailedSOPSequence with a FailureReason (the DICOM status a C-STORE
would get; 0xA900 for an instance of another study than the URL's, 0xC000 for
a part that is not ``application/dicom``; 0xA700 for a deflated instance that
inflates past ``maximum_instance_bytes``, refused without inflating the rest).
200: all stored; 202: some failed; 409: none stored.
"""

import mmap
import re
import tempfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dicomflow.dicom.integrity import decode_part10
from dicomflow.dicom.keys import is_valid_uid
from dicomflow.dicom.part10 import decode_file_meta
from dicomflow.errors import MultipartError
from dicomflow.net import storage
from dicomflow.web.context import WebContext
from dicomflow.web.dicomweb import multipart
from dicomflow.web.dicomweb.resources import checked_uid, instance_url, study_url

if TYPE_CHECKING:
    from dicomflow.engine.node import Node

router = APIRouter()

MAX_UPLOAD_BYTES = 2 << 30
ORIGIN = "STOW-RS"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xA900
RETRIEVE_URL, FAILURE_REASON = "00081190", "00081197"
FAILED_SEQUENCE, REFERENCED_SEQUENCE = "00081198", "00081199"
SOP_CLASS, SOP_INSTANCE = "00081150", "00081155"
UID_KEYWORDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@router.post("/studies")
async def store_instances(request: Request) -> JSONResponse:
    return await _store(request, None)


@router.post("/studies/{study}")
async def store_study_instances(request: Request, study: str) -> JSONResponse:
    return await _store(request, checked_uid(study, "StudyInstanceUID"))


async def _store(request: Request, study: str | None) -> JSONResponse:
    context: WebContext = request.app.state.context
    node = context.node
    if node is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "No node runs in this process, so uploads cannot be stored.",
        )
    boundary = _boundary(request.headers.get("content-type", ""))
    _check_declared_size(request.headers.get("content-length"))
    folder = context.data_root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as spool:
        size = await _spool_body(request, spool)
        if size == 0:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, "The request body is empty.")
        return await run_in_threadpool(_store_parts, request, node, spool, boundary, study)


def _boundary(content_type: str) -> str:
    media_type, _, parameters = content_type.partition(";")
    part_type = _parameter(parameters, "type")
    if media_type.strip().lower() != "multipart/related" or part_type not in (None, DICOM):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f'Content-Type "{content_type[:80]}" is not supported; send multipart/related; '
            f'type="{DICOM}".',
        )
    boundary = multipart.boundary_of(content_type)
    if boundary is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "The multipart/related Content-Type has no boundary."
        )
    return boundary


def _parameter(parameters: str, name: str) -> str | None:
    for piece in parameters.split(";"):
        key, _, value = piece.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


def _check_declared_size(length: str | None) -> None:
    declared = (length or "").strip()
    if re.fullmatch(r"[0-9]{1,20}", declared) and int(declared) > MAX_UPLOAD_BYTES:
        raise _too_large()


async def _spool_body(request: Request, spool: IO[bytes]) -> int:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise _too_large()
        spool.write(chunk)
    spool.flush()
    return size


def _too_large() -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"The upload is larger than {MAX_UPLOAD_BYTES} bytes; send fewer instances per request.",
    )


def _store_parts(
    request: Request, node: "Node", spool: IO[bytes], boundary: str, study: str | None
) -> JSONResponse:
    stored: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    limit = node.settings.maximum_instance_bytes  # what a deflated part may inflate to
    with (
        mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as body,
        node.upload(ORIGIN) as receive,  # one request, one "association"
    ):
        try:
            for part in multipart.split(body, boundary):
                item, ok = _store_part(request, receive, part, body, study, limit)
                (stored if ok else failed).append(item)
        except MultipartError as exc:
            if not stored and not failed:
                raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
            failed.append(_item(_Uids(), CANNOT_UNDERSTAND))
    request.state.audit_stored = len(stored)  # for the audit trail (web/access_audit.py)
    return _response(request, stored, failed, study)


def _store_part(
    request: Request,
    receive: Callable[[bytes], int],
    part: multipart.Part,
    body: mmap.mmap,
    study: str | None,
    maximum_bytes: int,
) -> tuple[dict[str, Any], bool]:
    data = body[part.start : part.end]
    uids = _uids(data, maximum_bytes)
    declared = (part.content_type or DICOM).split(";")[0].strip().lower()
    if declared != DICOM:
        return _item(uids, CANNOT_UNDERSTAND), False
    if study is not None and uids.study not in (None, study):
        return _item(uids, STUDY_MISMATCH), False
    try:
        result = receive(data)
    except (Exception, MemoryError) as exc:  # refused: the status is decided here, at the edge
        result = storage.refused(ORIGIN, exc)
    if result != 0 and result >> 12 != 0xB:  # success or warning: stored
        return _item(uids, result), False
    item = _item(uids, None)
    if all(is_valid_uid(uid) for uid in (uids.study, uids.series, uids.sop_instance)):
        url = instance_url(request, str(uids.study), str(uids.series), str(uids.sop_instance))
        item[RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    return item, True


class _Uids(NamedTuple):
    sop_class: str | None = None
    sop_instance: str | None = None
    study: str | None = None
    series: str | None = None


def _uids(data: bytes, maximum_bytes: int) -> _Uids:
    """The UIDs of an encoded instance; those of its file meta only when the dataset
    cannot be read (or is deflated and inflates past ``maximum_bytes``)."""
    try:
        ds = decode_part10(data, maximum_bytes=maximum_bytes)
        values = [ds.get(keyword) for keyword in UID_KEYWORDS]
    except Exception:  # any decoding failure: the part has no known dataset UIDs
        return _meta_uids(data)
    return _Uids(*(str(v) if v else None for v in values))


def _meta_uids(data: bytes) -> _Uids:
    try:
        meta, _end = decode_file_meta(data)
        values = [meta.get(k) for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")]
    except Exception:  # not even file meta: the part has no known UIDs
        return _Uids()
    return _Uids(*(str(v) if v else None for v in values))


def _item(uids: _Uids, reason: int | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        SOP_CLASS: _ui(uids.sop_class),
        SOP_INSTANCE: _ui(uids.sop_instance),
    }
    if reason is not None:
        item[FAILURE_REASON] = {"vr": "US", "Value": [reason]}
    return item


def _ui(uid: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [uid]} if uid else {"vr": "UI"}


def _response(
    request: Request, stored: list[dict[str, Any]], failed: list[dict[str, Any]], study: str | None
) -> JSONResponse:
    body: dict[str, Any] = {}
    if study is not None:
        body[RETRIEVE_URL] = {"vr": "UR", "Value": [study_url(request, study)]}
    if failed:
        body[FAILED_SEQUENCE] = {"vr": "SQ", "Value": failed}
    if stored:
        body[REFERENCED_SEQUENCE] = {"vr": "SQ", "Value": stored}
    code = status.HTTP_200_OK if not failed else status.HTTP_202_ACCEPTED
    if not stored:
        code = status.HTTP_409_CONFLICT
    return JSONResponse(body, status_code=code, media_type=DICOM_JSON)
