"""The registry services installed in ``services_directory``, with their settings."""

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dicomflow.errors import DicomflowError
from dicomflow.services.definitions import read_settings
from dicomflow.services.job_spec import JobSpec
from dicomflow.services.registry import SETTINGS_FILE, Registry
from dicomflow.web.views import context_of, render

router = APIRouter()


def services(directory: Path | None) -> list[dict[str, Any]]:
    """Each installed service: its jobs' settings, or why they cannot be read."""
    if directory is None:
        return []
    registry = Registry(directory)
    found: list[dict[str, Any]] = []
    for name in registry.services():
        try:
            specs = read_settings(registry.registry_dir(name) / SETTINGS_FILE, name)
        except DicomflowError as exc:
            found.append({"name": name, "error": str(exc), "jobs": []})
            continue
        found.append({"name": name, "error": "", "jobs": [_spec(spec) for spec in specs]})
    return found


def _spec(spec: JobSpec) -> dict[str, Any]:
    return {
        "job_name": spec.job_name,
        "worker": spec.worker,
        "callback": spec.callback,
        "depends_on": list(spec.depends_on),
        "priority": spec.priority.value,
        "timeout_s": spec.timeout_s,
        "sort_position": spec.sort_position,
        "description": spec.description,
        "params": json.dumps(spec.params, indent=2, default=str),
    }


@router.get("/services", response_class=HTMLResponse)
def services_page(request: Request) -> HTMLResponse:
    directory = context_of(request).services_directory
    values = {"services": services(directory), "directory": directory}
    return render(request, "services.html", values)


@router.get("/api/services")
def services_json(request: Request) -> JSONResponse:
    """``{"services": [{"name", "error", "jobs": [settings...]}]}``."""
    return JSONResponse({"services": services(context_of(request).services_directory)})
