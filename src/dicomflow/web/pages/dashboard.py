"""The dashboard: an overview, then the pages of the spool, jobs, services, outbox and
archive, each with a JSON twin under ``/api`` that the pages poll for live updates.

JSON endpoints (all authenticated, read-only unless POST):

=====================================================  =====================================
``GET /api/overview``                                  counters, queue depth, spool, outbox
``GET /api/patients``                                  patients waiting, per input state
``GET /api/jobs?status=&pipeline=&service=&kind=``     jobs, newest first
``GET /api/jobs/{id}``                                 one job: arguments, timings, log, error
``POST /jobs/{id}/retry``, ``/jobs/{id}/cancel``       actions (JSON with Accept: JSON)
``GET /api/services``                                  registry services and their settings
``GET /api/outbox``; ``POST /outbox/{name}/resend``    endpoints, items waiting; send one now
``GET /api/archive/studies[/{study}[/series/{s}]]``    the archive; ``POST .../unlock``
=====================================================  =====================================
"""

from dataclasses import fields
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from dicomflow.queue.job import JobStatus
from dicomflow.web.context import WebContext
from dicomflow.web.pages import endpoints, jobs, patients, services, studies
from dicomflow.web.prometheus import job_counts
from dicomflow.web.views import context_of, render

router = APIRouter()
for _pages in (patients, jobs, services, endpoints, studies):
    router.include_router(_pages.router)

DEPTH_STATUSES = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.STARTED, JobStatus.FAILED)


def overview(context: WebContext) -> dict[str, Any]:
    """What the overview shows: the node's counters, jobs per status, waiting work."""
    counts = job_counts(context.queue)  # one indexed query, not a listing of every job
    queue = {
        status.value: sum(n for (found, _), n in counts.items() if found == status)
        for status in DEPTH_STATUSES
    }
    node = context.node
    counters = {}
    if node is not None:
        counted = [f.name for f in fields(node.counters) if f.name != "lock"]
        counters = {name: getattr(node.counters, name) for name in counted}
    return {
        "node": node.name if node is not None else None,
        "ae_title": context.settings.ae_title,
        "port": node.port if node is not None else context.settings.port,
        "counters": counters,
        "queue": queue,
        "patients": len(node.collector.patients()) if node is not None else None,
        "journal": node.journal.status() if node is not None and node.journal else None,
        "outbox": len(endpoints.items(context)),
        "archive": context.archive_datastore,
        "services_directory": str(context.services_directory or ""),
    }


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request) -> HTMLResponse:
    return render(request, "overview.html", {"overview": overview(context_of(request))})


@router.get("/api/overview")
def overview_json(request: Request) -> JSONResponse:
    """Counters since start, jobs per status (the queue depth), patients and outbox items."""
    return JSONResponse(overview(context_of(request)))
