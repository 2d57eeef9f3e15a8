"""The jobs: a filtered list, one job's page, their JSON, and the retry and cancel
actions."""

import json
import logging
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dicomflow.errors import DicomflowError
from dicomflow.queue.job import Job, JobKind, JobStatus, job_kind
from dicomflow.web.context import WebContext
from dicomflow.web.privacy import identifying_values, redact, redact_text, round_identifiers
from dicomflow.web.views import (
    answer,
    bad_request,
    check_job_id,
    context_of,
    duration,
    not_found,
    render,
    shows_identifiers,
    when,
)

logger = logging.getLogger(__name__)

router = APIRouter()

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
ERROR_LINE = 200


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows: by status, pipeline (job name), service and kind."""

    status: JobStatus | None = None
    pipeline: str = ""
    service: str = ""
    kind: str = ""
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, status: str, pipeline: str, service: str, kind: str, limit: int) -> "JobFilter":
        if status and status not in {known.value for known in JobStatus}:
            known = ", ".join(s.value for s in JobStatus)
            raise bad_request(f'Unknown status "{status[:40]}"; use one of {known}.')
        if not 1 <= limit <= MAX_LIMIT:
            raise bad_request(f"limit must be between 1 and {MAX_LIMIT}.")
        return cls(JobStatus(status) if status else None, pipeline, service, kind, limit)

    def accepts(self, job: Job) -> bool:
        if self.pipeline and (kind_of(job) is not JobKind.PIPELINE or job.name != self.pipeline):
            return False
        if self.service and job.meta.get("service") != self.service:
            return False
        return not self.kind or kind_of(job) == self.kind

    def select(self, context: WebContext) -> list[Job]:
        jobs = context.queue.get().jobs(self.status, limit=MAX_LIMIT)
        return [job for job in jobs if self.accepts(job)][: self.limit]

    def query(self) -> dict[str, str]:
        values = {"status": self.status.value if self.status else ""}
        values |= {"pipeline": self.pipeline, "service": self.service, "kind": self.kind}
        return {key: value for key, value in values.items() if value}


def kind_of(job: Job) -> JobKind | str:
    """What ``job`` is for (see :func:`~dicomflow.queue.job.job_kind`)."""
    return job_kind(job.meta)


LOG_WITHHELD = (
    "(not shown: this round's instances are gone, so its patient's identifiers cannot be"
    " hidden in it; the full log is in the job log directory (logs/jobs/ of the data"
    " directory on the embedded queue), or set show_patient_identifiers)"
)


def hidden_values(job: Job, context: WebContext) -> set[str] | None:
    """What the dashboard hides in a job's log and error: the identifying values of its
    patient, found in its arguments or in its round's instances; nothing with
    ``show_patient_identifiers``; None (the whole text) for a pipeline round whose
    instances are gone."""
    if context.settings.show_patient_identifiers:
        return set()
    found = identifying_values(job.kwargs) | identifying_values(job.result)
    round_id = job.meta.get("round_id")
    if round_id is None:
        return found
    of_round = round_identifiers(context.data_root, round_id)
    return found | of_round if of_round else None


def _hide(text: str, hidden: AbstractSet[str] | None) -> str:
    if hidden is None:
        return LOG_WITHHELD if text else ""
    return redact_text(text, hidden)


def job_row(job: Job, hidden: AbstractSet[str] | None = frozenset()) -> dict[str, Any]:
    """A job as one row of the list (and its JSON), ``hidden`` values hidden."""
    ran = job.ended_at - job.started_at if job.ended_at and job.started_at else None
    error = _hide(job.error or "", hidden).strip().splitlines()
    return {
        "id": job.id,
        "name": job.name,
        "kind": kind_of(job),
        "service": str(job.meta.get("service", "")),
        "status": job.status.value,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "created": when(job.created_at),
        "started": when(job.started_at),
        "ended": when(job.ended_at),
        "duration": duration(ran),
        "error": error[-1][:ERROR_LINE] if error else "",
        "can_retry": job.status.is_unsuccessful,
        "can_cancel": not job.status.is_terminal,
    }


def job_detail(
    job: Job, show: bool, hidden: AbstractSet[str] | None = frozenset()
) -> dict[str, Any]:
    """A job with everything its page shows. Unless ``show``, identifying values in its
    arguments, meta and result are hashed; ``hidden`` values (see :func:`hidden_values`)
    are hidden in its log and error."""
    return {
        **job_row(job, hidden),
        "function": job.function,
        "priority": job.priority.value,
        "timeout_s": job.timeout_s,
        "retries": job.retries,
        "interruptions": job.interruptions,
        "depends_on": list(job.depends_on),
        "worker": job.worker or "",
        "full_error": _hide(job.error or "", hidden),
        "log_tail": _hide(job.log_tail or "", hidden),
        "kwargs": _pretty(redact(job.kwargs, show)),
        "meta": _pretty(redact(job.meta, show)),
        "result": _pretty(redact(job.result, show)),
    }


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def _filter(
    status: str = "",
    pipeline: str = "",
    service: str = "",
    kind: str = "",
    limit: int = DEFAULT_LIMIT,
) -> JobFilter:
    """The jobs pages' query parameters (a FastAPI dependency); 400 when one is wrong."""
    return JobFilter.parse(status, pipeline, service, kind, limit)


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, chosen: Annotated[JobFilter, Depends(_filter)]) -> HTMLResponse:
    context = context_of(request)
    jobs = [job_row(job, hidden_values(job, context)) for job in chosen.select(context)]
    values = {"jobs": jobs, "filter": chosen, "statuses": [s.value for s in JobStatus]}
    return render(request, "jobs.html", values)


@router.get("/api/jobs")
def jobs_json(request: Request, chosen: Annotated[JobFilter, Depends(_filter)]) -> JSONResponse:
    """``{"jobs": [row, ...]}``, newest first, filtered like the page (query parameters
    ``status``, ``pipeline``, ``service``, ``kind``, ``limit``)."""
    context = context_of(request)
    rows = [job_row(job, hidden_values(job, context)) for job in chosen.select(context)]
    return JSONResponse({"jobs": rows})


def _job(request: Request, job_id: str) -> Job:
    job = context_of(request).queue.get().fetch(check_job_id(job_id))
    if job is None:
        raise not_found(f"No job {job_id}.")
    return job


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str) -> HTMLResponse:
    return render(request, "job.html", {"job": _detail(request, job_id)})


@router.get("/api/jobs/{job_id}")
def job_json(request: Request, job_id: str) -> JSONResponse:
    """One job with its arguments, timings, log tail and error."""
    return JSONResponse(_detail(request, job_id))


def _detail(request: Request, job_id: str) -> dict[str, Any]:
    job = _job(request, job_id)
    return job_detail(job, shows_identifiers(request), hidden_values(job, context_of(request)))


@router.post("/jobs/{job_id}/retry")
def retry(request: Request, job_id: str) -> Response:
    """Run a failed, timed-out or canceled job again (a pipeline's round with it)."""
    job = _job(request, job_id)
    back = _back(request, job.id)
    try:
        _requeue(context_of(request), job)
    except DicomflowError as exc:
        return answer(request, back, str(exc), ok=False, job=job_row(job))
    logger.info("job %s: requeued from the dashboard", job.id)
    requeued = _job(request, job_id)
    return answer(request, back, f"Job {job.label} is queued again.", job=job_row(requeued))


def _requeue(context: WebContext, job: Job) -> None:
    """Requeue ``job``; a failed pipeline round of this node goes back to processing with it."""
    node = context.node
    round_id = job.meta.get("round_id")
    if (
        node is not None
        and kind_of(job) is JobKind.PIPELINE
        and isinstance(round_id, str)
        and (node.rounds.failed / round_id).is_dir()
    ):
        node.retry_round(round_id, job.id)
    else:
        context.queue.get().requeue(job.id)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: str) -> Response:
    """Cancel a queued, deferred or running job (a running one is stopped)."""
    job = _job(request, job_id)
    back = _back(request, job.id)
    try:
        canceled = context_of(request).queue.get().cancel(job.id)
    except DicomflowError as exc:
        return answer(request, back, str(exc), ok=False, job=job_row(job))
    logger.info("job %s: canceled from the dashboard", job.id)
    return answer(request, back, f"Job {job.label} is canceled.", job=job_row(canceled))


def _back(request: Request, job_id: str) -> str:
    """Where a form returns: the jobs list it came from, else the job's page."""
    referer = request.headers.get("referer", "")
    base = str(request.base_url).rstrip("/")
    if referer.startswith(f"{base}/jobs") and not referer.startswith(f"{base}/jobs/"):
        return referer[len(base) :]
    return f"/jobs/{job_id}"
