"""The patients and studies waiting in the spool, with each input's state."""

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydicom import Dataset

from dicomflow.dicom.keys import is_key
from dicomflow.engine.node import Node
from dicomflow.web.context import WebContext
from dicomflow.web.privacy import dataset_identifiers, short_key
from dicomflow.web.views import ago, context_of, render, when

router = APIRouter()


def patients(context: WebContext) -> list[dict[str, Any]]:
    """Each patient waiting: its hashed key, inputs, studies and arrival times. Without a
    node in this process, only what the spool folder shows (instances per patient)."""
    if context.node is None:
        return _on_disk(context.data_root / "spool" / "incoming")
    show = context.settings.show_patient_identifiers
    return [_patient(context.node, key, show) for key in sorted(context.node.collector.patients())]


def _patient(node: Node, key: str, show: bool) -> dict[str, Any]:
    collector = node.collector
    inputs = collector.describe(key)
    headers = collector.headers(key)
    first, last = collector.arrivals(key) or (None, None)
    return {
        "key": short_key(key),
        "identifiers": dataset_identifiers(headers[0] if headers else None, show),
        "instances": len(headers),
        "complete": bool(inputs) and all(state.validates for state in inputs),
        "inputs": [
            {
                "name": state.name,
                "instances": state.instances,
                "validates": state.validates,
                "needs": _needs(state.required_tags, state.required_values),
            }
            for state in inputs
        ],
        "studies": _studies(headers),
        "first_arrival": when(first),
        "last_arrival": when(last),
        "last_arrival_ago": ago(last),
    }


def _needs(tags: list[str], values: dict[str, str]) -> str:
    parts = [f"{tag} = {value}" for tag, value in values.items()]
    parts += [tag for tag in tags if tag not in values]
    return ", ".join(parts)


def _studies(headers: list[Dataset]) -> list[dict[str, Any]]:
    studies: dict[str, dict[str, Any]] = {}
    for header in headers:
        uid = str(header.get("StudyInstanceUID", "") or "")
        study = studies.setdefault(
            uid,
            {"uid": uid, "description": "", "modalities": set(), "series": set(), "instances": 0},
        )
        study["description"] = study["description"] or str(header.get("StudyDescription", ""))
        study["modalities"].add(str(header.get("Modality", "") or ""))
        study["series"].add(str(header.get("SeriesInstanceUID", "")))
        study["instances"] += 1
    return [
        {
            **study,
            "modalities": sorted(m for m in study["modalities"] if m),
            "series": len(study["series"]),
        }
        for study in studies.values()
    ]


def _on_disk(incoming: Path) -> list[dict[str, Any]]:
    if not incoming.is_dir():
        return []
    found: list[dict[str, Any]] = []
    for folder in sorted(incoming.iterdir()):
        if folder.is_dir() and is_key(folder.name):
            files = list(folder.glob("*.dcm"))
            last = max((_mtime(path) for path in files), default=None)
            found.append(
                {
                    "key": short_key(folder.name),
                    "identifiers": {},
                    "instances": len(files),
                    "complete": False,
                    "inputs": [],
                    "studies": [],
                    "first_arrival": "",
                    "last_arrival": when(last),
                    "last_arrival_ago": ago(last),
                }
            )
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # taken into a round while being listed
        return 0.0


@router.get("/patients", response_class=HTMLResponse)
def patients_page(request: Request) -> HTMLResponse:
    context = context_of(request)
    values = {"patients": patients(context), "has_node": context.node is not None}
    return render(request, "patients.html", values)


@router.get("/api/patients")
def patients_json(request: Request) -> JSONResponse:
    """``{"patients": [...]}``: per patient its inputs (instances, validates, needs),
    studies and arrival times; identifying values only with ``show_patient_identifiers``."""
    return JSONResponse({"patients": patients(context_of(request))})
