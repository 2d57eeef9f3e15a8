"""DICOMweb over the archive: QIDO-RS, WADO-RS and STOW-RS (mounted at ``/dicomweb``).

- QIDO-RS (:mod:`~dicomflow.web.dicomweb.qido`): ``/studies``, ``/series``,
  ``/instances`` and their study/series-scoped forms, from metadata.json alone.
- WADO-RS (:mod:`~dicomflow.web.dicomweb.wado`, :mod:`~dicomflow.web.dicomweb.render`):
  studies, series and instances (exact stored bytes), metadata, frames, bulk data,
  rendered JPEG and thumbnails.
- STOW-RS (:mod:`~dicomflow.web.dicomweb.stow`): uploads stored into the running node
  like C-STOREs; they reach the archive when the node archives their series.

Path parameters that are not DICOM UIDs get 400 naming the parameter, also when an
encoded ``/`` (``..%2F..``) makes the path match no resource; unknown UIDs get 404.
Without an archive, searches have no results and retrievals get 404.
"""

from itertools import pairwise
from urllib.parse import unquote

from fastapi import APIRouter, HTTPException, Request, status

from dicomflow.dicom.keys import shorten
from dicomflow.web.dicomweb import qido, render, stow, wado
from dicomflow.web.dicomweb.resources import ROUTE_PREFIX, checked_uid

UID_AFTER = {
    "studies": "StudyInstanceUID",
    "series": "SeriesInstanceUID",
    "instances": "SOPInstanceUID",
}

router = APIRouter()
router.include_router(qido.router)
router.include_router(stow.router)
router.include_router(render.router)
router.include_router(wado.router)


@router.api_route("/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
def unknown_resource(request: Request, rest: str) -> None:
    """No route matched: 400 naming a UID parameter that is not a UID, else 404."""
    raw = request.scope.get("raw_path", b"").decode("latin-1").split("?")[0]
    segments = [unquote(s) for s in raw.removeprefix(ROUTE_PREFIX).split("/") if s]
    for name, value in pairwise(segments):
        if name in UID_AFTER:
            checked_uid(value, UID_AFTER[name])
        elif name in ("frames", "bulkdata"):
            _check_value(name, value)
    raise HTTPException(status.HTTP_404_NOT_FOUND, f'No DICOMweb resource "{rest[:80]}".')


def _check_value(name: str, value: str) -> None:
    """A ``frames`` or ``bulkdata`` path parameter that breaks its grammar: 400."""
    pattern = wado.TAG if name == "bulkdata" else wado.FRAME_LIST
    if not pattern.fullmatch(value):
        parameter = "tag" if name == "bulkdata" else "frames"
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            f'Path parameter {parameter} "{shorten(value)}" is not valid.',
        )
