"""Rendered images and thumbnails (PS3.18 10.4.1.1.3, 10.7): ``image/jpeg`` or ``image/png``.

Monochrome images are windowed as the archive's thumbnails are (VOI LUT, the
stored window, else min/max; ``window=center,width`` overrides it), colour
images converted to RGB. ``viewport=width,height`` scales the image down to
fit. The media type comes from the ``accept`` query parameter when there is
one (OHIF sends ``?accept=image/jpeg``), else from the Accept header. A study or
series is rendered as its representative instance: the middle instance with
pixel data of the series (of the study's first series that has one).
Thumbnails are 128 x 128: a series' stored ``thumbnail.jpg`` when there is one
and JPEG is asked, else the representative instance's first frame.

An instance whose pixel data cannot be decoded gets 406 and one log line.
Encoding needs PyAV (the ``archive`` extra).
"""

import importlib.util
import io
import logging
import math

import numpy as np
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from pydicom import Dataset, dcmread

from dicomflow.cod import thumbnail
from dicomflow.cod.metadata import Record
from dicomflow.cod.query import SeriesDocument, instance_number
from dicomflow.dicom.decoding import one_line
from dicomflow.dicom.keys import shorten
from dicomflow.errors import CODError
from dicomflow.web.dicomweb.accept import single_media_type
from dicomflow.web.dicomweb.resources import (
    instance_document,
    read_instance,
    required_reader,
    series_document,
    study_documents,
)
from dicomflow.web.dicomweb.wado import PREFIX, frame_numbers

logger = logging.getLogger(__name__)

router = APIRouter()

JPEG = "image/jpeg"
PNG = "image/png"
CACHE_CONTROL = "private, max-age=60"
Image = thumbnail.Image
ENCODERS = {JPEG: thumbnail.encode_jpeg, PNG: thumbnail.encode_png}


@router.get(PREFIX + "/rendered")
def instance_rendered(
    request: Request,
    study: str,
    series: str,
    instance: str,
    window: str | None = None,
    viewport: str | None = None,
) -> Response:
    document, uid = instance_document(request, study, series, instance)
    return _render(request, document, uid, "1", window, viewport)


@router.get(PREFIX + "/frames/{frames}/rendered")
def frame_rendered(
    request: Request,
    study: str,
    series: str,
    instance: str,
    frames: str,
    window: str | None = None,
    viewport: str | None = None,
) -> Response:
    document, uid = instance_document(request, study, series, instance)
    return _render(request, document, uid, frames, window, viewport)


@router.get(PREFIX + "/thumbnail")
def instance_thumbnail(request: Request, study: str, series: str, instance: str) -> Response:
    media_type = _media_type(request)
    document, uid = instance_document(request, study, series, instance)
    return _image_response(_thumbnail(request, document, uid), media_type)


@router.get("/studies/{study}/series/{series}/rendered")
def series_rendered(
    request: Request,
    study: str,
    series: str,
    window: str | None = None,
    viewport: str | None = None,
) -> Response:
    document = series_document(request, study, series)
    return _render(request, document, _middle(document), "1", window, viewport)


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(request: Request, study: str, series: str) -> Response:
    return _series_thumbnail(request, series_document(request, study, series))


@router.get("/studies/{study}/rendered")
def study_rendered(
    request: Request, study: str, window: str | None = None, viewport: str | None = None
) -> Response:
    document = _representative(study_documents(request, study))
    return _render(request, document, _middle(document), "1", window, viewport)


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(request: Request, study: str) -> Response:
    return _series_thumbnail(request, _representative(study_documents(request, study)))


def _series_thumbnail(request: Request, document: SeriesDocument) -> Response:
    media_type = _media_type(request)
    if media_type == JPEG:
        stored = required_reader(request).thumbnail_jpeg(document)
        if stored is not None:
            return _encoded_response(stored, JPEG)
    return _image_response(_thumbnail(request, document, _middle(document)), media_type)


def _render(
    request: Request,
    document: SeriesDocument,
    uid: str,
    frames: str,
    window: str | None,
    viewport: str | None,
) -> Response:
    media_type = _media_type(request)
    center_width = None if window is None else _pair("window", window, allow_function=True)
    fitted = None if viewport is None else _pair("viewport", viewport)
    images = _rendered(request, document, uid, center_width)
    image = images[frame_numbers(frames, len(images), uid)[0] - 1]
    if fitted is not None:
        image = _fit_within(image, *fitted)
    return _image_response(image, media_type)


def _thumbnail(request: Request, document: SeriesDocument, uid: str) -> Image:
    image, _ = thumbnail.fit(_rendered(request, document, uid, None)[0], thumbnail.SIZE)
    return image


def _media_type(request: Request) -> str:
    """The rendered media type asked by the ``accept`` query parameter, else the header."""
    asked = request.query_params.get("accept") or request.headers.get("accept")
    return single_media_type(asked, JPEG, PNG)


def _middle(document: SeriesDocument) -> str:
    ordered = sorted(document.instances.items(), key=lambda i: (instance_number(i[1]), i[0]))
    with_pixels = [uid for uid, record in ordered if _has_pixels(record)]
    chosen = with_pixels or [uid for uid, _ in ordered]
    return chosen[len(chosen) // 2]


def _representative(documents: list[SeriesDocument]) -> SeriesDocument:
    """The first series with pixel data, else the first (``documents`` is not empty)."""
    with_pixels = [d for d in documents if any(map(_has_pixels, d.instances.values()))]
    return (with_pixels or documents)[0]


def _has_pixels(record: Record) -> bool:
    return "7FE00010" in record.get("metadata", {})


def _rendered(
    request: Request,
    document: SeriesDocument,
    uid: str,
    window: tuple[float, float] | None,
) -> list[Image]:
    data = read_instance(required_reader(request), document, uid)
    try:
        ds = dcmread(io.BytesIO(data))
        if window is not None:
            _set_window(ds, *window)
        images = thumbnail.render_frames(ds)
    except CODError as exc:  # the pixel data cannot be decoded
        raise _cannot_render(str(exc)) from None
    except Exception as exc:  # the dataset cannot be parsed
        reason = one_line(exc)
        raise _cannot_render(f"Instance {uid} cannot be read: {reason}.") from None
    if not images:
        raise _cannot_render(f"Instance {uid} has no pixel data to render.")
    return images


def _set_window(ds: Dataset, center: float, width: float) -> None:
    ds.pop("VOILUTSequence", None)
    ds.WindowCenter, ds.WindowWidth = center, max(width, 1.0)


def _pair(name: str, text: str, allow_function: bool = False) -> tuple[float, float]:
    pieces = text.split(",")
    if allow_function and len(pieces) == 3:
        pieces = pieces[:2]
    try:
        first, second = (float(piece) for piece in pieces)
        if not (math.isfinite(first) and math.isfinite(second)):
            raise ValueError(text)
    except ValueError:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f'Query parameter {name} "{shorten(text)}" is not two numbers separated by ",".',
        ) from None
    if name == "viewport" and (first < 1 or second < 1):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f'Viewport "{shorten(text)}" is empty.')
    return first, second


def _fit_within(image: Image, width: float, height: float) -> Image:
    rows, columns = image.shape[:2]
    scale = min(1.0, width / columns, height / rows)
    new_rows, new_columns = max(1, int(rows * scale)), max(1, int(columns * scale))
    row_index = np.arange(new_rows) * rows // new_rows
    column_index = np.arange(new_columns) * columns // new_columns
    fitted: Image = image[row_index][:, column_index]
    return fitted


def _image_response(image: Image, media_type: str) -> Response:
    """``image`` encoded as ``media_type`` (406 when PyAV is not installed)."""
    if importlib.util.find_spec("av") is None:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            "Rendering images needs PyAV; install the dicomflow[archive] extra.",
        )
    return _encoded_response(ENCODERS[media_type](image), media_type)


def _encoded_response(data: bytes, media_type: str) -> Response:
    return Response(data, media_type=media_type, headers={"Cache-Control": CACHE_CONTROL})


def _cannot_render(message: str) -> HTTPException:
    """406 with ``message`` (a sentence naming the instance), logged in one line."""
    logger.warning("%s", message)
    return HTTPException(status.HTTP_406_NOT_ACCEPTABLE, message)
