"""Rendered images and thumbnails (PS3.18 10.4.1.1.3, 10.7): ``image/jpeg``.

Monochrome images are windowed as the archive's thumbnails are (VOI LUT, the
stored window, else min/max; ``window=center,width`` overrides it), colour
images converted to RGB. ``viewport=width,height`` scales the image down to
fit. Thumbnails are 128 x 128: a series' stored ``thumbnail.jpg`` when there is
one, else its middle instance's first frame. JPEG encoding needs PyAV (the
``archive`` extra).
"""

import importlib.util
import io
import math

import numpy as np
from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from pydicom import Dataset, dcmread

from dicomflow.cod import thumbnail
from dicomflow.cod.query import SeriesDocument, instance_number
from dicomflow.dicom.keys import shorten
from dicomflow.web.dicomweb_accept import accepts_single
from dicomflow.web.dicomweb_archive import (
    instance_document,
    read_instance,
    required_reader,
    series_document,
    study_documents,
)
from dicomflow.web.dicomweb_wado import PREFIX, frame_numbers

router = APIRouter()

JPEG = "image/jpeg"
CACHE_CONTROL = "private, max-age=60"
Image = thumbnail.Image


@router.get(PREFIX + "/rendered")
def instance_rendered(
    request: Request,
    study: str,
    series: str,
    instance: str,
    window: str | None = None,
    viewport: str | None = None,
) -> Response:
    return _render_instance(request, study, series, instance, "1", window, viewport)


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
    return _render_instance(request, study, series, instance, frames, window, viewport)


@router.get(PREFIX + "/thumbnail")
def instance_thumbnail(request: Request, study: str, series: str, instance: str) -> Response:
    accepts_single(request, JPEG)
    document, uid = instance_document(request, study, series, instance)
    return _jpeg_response(_thumbnail(request, document, uid))


@router.get("/studies/{study}/series/{series}/rendered")
def series_rendered(request: Request, study: str, series: str) -> Response:
    return series_thumbnail(request, study, series)


@router.get("/studies/{study}/series/{series}/thumbnail")
def series_thumbnail(request: Request, study: str, series: str) -> Response:
    accepts_single(request, JPEG)
    document = series_document(request, study, series)
    stored = required_reader(request).thumbnail_jpeg(document)
    if stored is not None:
        return _jpeg_response(stored)
    return _jpeg_response(_thumbnail(request, document, _middle(document)))


@router.get("/studies/{study}/thumbnail")
def study_thumbnail(request: Request, study: str) -> Response:
    documents = study_documents(request, study)
    return series_thumbnail(request, study, documents[0].series_uid)


def _render_instance(
    request: Request,
    study: str,
    series: str,
    instance: str,
    frames: str,
    window: str | None,
    viewport: str | None,
) -> Response:
    accepts_single(request, JPEG)
    document, uid = instance_document(request, study, series, instance)
    ds = dcmread(io.BytesIO(read_instance(required_reader(request), document, uid)))
    if window is not None:
        _set_window(ds, window)
    images = _rendered(ds, uid)
    number = frame_numbers(frames, len(images), uid)[0]
    image = images[number - 1]
    if viewport is not None:
        image = _fit_within(image, *_pair("viewport", viewport))
    return _jpeg_response(encode_jpeg(image))


def _thumbnail(request: Request, document: SeriesDocument, uid: str) -> bytes:
    ds = dcmread(io.BytesIO(read_instance(required_reader(request), document, uid)))
    image, _ = thumbnail.fit(_rendered(ds, uid)[0], thumbnail.SIZE)
    return encode_jpeg(image)


def _middle(document: SeriesDocument) -> str:
    ordered = sorted(document.instances.items(), key=lambda i: (instance_number(i[1]), i[0]))
    with_pixels = [uid for uid, record in ordered if "7FE00010" in record.get("metadata", {})]
    chosen = with_pixels or [uid for uid, _ in ordered]
    return chosen[len(chosen) // 2]


def _rendered(ds: Dataset, uid: str) -> list[Image]:
    try:
        images = thumbnail.render_frames(ds)
    except Exception as exc:  # any decoder failure: the image cannot be rendered
        raise _cannot_render(uid, f"its pixel data cannot be decoded ({exc})") from None
    if not images:
        raise _cannot_render(uid, "it has no pixel data")
    return images


def _set_window(ds: Dataset, text: str) -> None:
    center, width = _pair("window", text, allow_function=True)
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


def encode_jpeg(image: Image) -> bytes:
    """Encode an 8-bit RGB image as JPEG (406 when PyAV is not installed)."""
    if importlib.util.find_spec("av") is None:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            "Rendering JPEG needs PyAV; install the dicomflow[archive] extra.",
        )
    return thumbnail.encode_jpeg(image)


def _jpeg_response(data: bytes) -> Response:
    return Response(data, media_type=JPEG, headers={"Cache-Control": CACHE_CONTROL})


def _cannot_render(uid: str, reason: str) -> HTTPException:
    return HTTPException(
        status.HTTP_406_NOT_ACCEPTABLE, f'Instance "{uid}" cannot be rendered: {reason}.'
    )
