"""Scheduling one stable series: ask every job's callback, enqueue the wanted jobs as one graph.

For each call of :func:`schedule_series`:

1. Jobs are visited in scheduling order (dependency depth, ``sortPosition``, name).
2. Each callback is called by keyword with ``jobName``, ``headers`` (a copy),
   ``params`` (a deep copy), ``added_params`` (what the earlier callbacks of
   *this* series injected) and the caller's ``base_kwargs``. As in the seed,
   ``added_params`` is one dict shared by the series' callbacks: one that changes
   it in place is seen by the later ones and by the workers. It is created inside
   the call, never a default argument, so nothing leaks from one series into the
   next (the seed's mutable default did leak).
3. A callback returns ``True``/``False`` or ``(bool, dict)``; the dict becomes
   ``added_params[jobName]`` for later callbacks and for every worker of the
   series (even when the bool is ``False``). A ``disabled`` job is not asked.
4. A callback that raises, or returns anything else, fails its job in the
   report (with the traceback); the job is not enqueued.
5. A wanted job whose dependency is not scheduled for this series (its
   callback returned ``False``, failed, or was itself refused) fails in the
   report and is not enqueued: it would otherwise wait forever for a job that
   never runs. Its own dependants then fail the same way.
6. The scheduled jobs go to the queue in one ``backend.enqueue_many`` call, as
   ``dicomflow.services.runner:run_service_job`` jobs whose JSON keyword
   arguments carry everything the worker needs. If the backend raises, the
   error propagates: nothing of the series is assumed queued. Every job also
   depends on the jobs of ``after`` (say the job archiving the series it reads),
   so it fails, never waits forever, when one of them fails. A job of a later
   stage (``scheduler.json``'s pre jobs, the registry's jobs, its post jobs)
   depends on every scheduled job of the earlier stages, as in the seed.
"""

import copy
import json
import logging
import os
import traceback
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydicom.valuerep import PersonName

from dicomflow.errors import ServiceDefinitionError
from dicomflow.queue.backend import Backend
from dicomflow.queue.job import Job
from dicomflow.services.graph import dependency_order
from dicomflow.services.job_spec import Stage
from dicomflow.services.registry import RegisteredJob
from dicomflow.services.signature import call_with_keywords

logger = logging.getLogger(__name__)

RUNNER = "dicomflow.services.runner:run_service_job"
STAGES = (Stage.PRE, Stage.MAIN, Stage.POST)
RESERVED = frozenset({"jobName", "headers", "params", "added_params", "service"})


class Decision(StrEnum):
    """What became of a job for one series."""

    SCHEDULED = "scheduled"
    SKIPPED = "skipped"  # its callback returned False
    DISABLED = "disabled"  # "disabled": true in its settings
    FAILED = "failed"  # its callback failed, or a dependency is not scheduled


@dataclass
class JobOutcome:
    """One job's decision for one series."""

    job_name: str
    service: str
    decision: Decision
    error: str = ""
    job_id: str | None = None


@dataclass
class ScheduleReport:
    """Everything :func:`schedule_series` decided for one series."""

    series_key: str
    outcomes: list[JobOutcome] = field(default_factory=list)
    added_params: dict[str, Any] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)

    @property
    def scheduled(self) -> list[str]:
        return [o.job_name for o in self.outcomes if o.decision is Decision.SCHEDULED]

    @property
    def errors(self) -> dict[str, str]:
        return {o.job_name: o.error for o in self.outcomes if o.decision is Decision.FAILED}

    def outcome(self, job_name: str) -> JobOutcome:
        for outcome in self.outcomes:
            if outcome.job_name == job_name:
                return outcome
        raise KeyError(f'Job "{job_name}" is not in the report of series "{self.series_key}".')


def schedule_series(
    jobs: Sequence[RegisteredJob],
    headers: Mapping[str, Any],
    backend: Backend,
    *,
    series_key: str,
    base_kwargs: Mapping[str, Any] | None = None,
    after: Sequence[str] = (),
) -> ScheduleReport:
    """Decide, with the callbacks, which ``jobs`` run for a series, and enqueue them.

    Raises:
        ValueError: if ``base_kwargs`` sets a reserved name.
        TypeError: if ``headers`` or ``base_kwargs`` cannot be sent to a worker as JSON.
        ServiceDefinitionError: if ``jobs`` form a dependency cycle.
    """
    extras = _base_kwargs(base_kwargs, series_key)
    header_values = _json_copy(headers, f'Series "{series_key}": headers')
    report = ScheduleReport(series_key)
    by_spec = {id(job.spec): job for job in jobs}
    wanted: list[RegisteredJob] = []
    for spec in dependency_order([job.spec for job in jobs]):
        job = by_spec[id(spec)]
        outcome = _decide(job, header_values, extras, report)
        report.outcomes.append(outcome)
        if outcome.decision is Decision.SCHEDULED:
            wanted.append(job)
    report.jobs = _enqueue(wanted, header_values, extras, report, backend, list(after))
    logger.info(
        "series %s: %d job(s) scheduled, %d failed, of %d",
        series_key,
        len(report.scheduled),
        len(report.errors),
        len(report.outcomes),
    )
    return report


def _base_kwargs(base_kwargs: Mapping[str, Any] | None, series_key: str) -> dict[str, Any]:
    extras = dict(base_kwargs or {})
    clashes = sorted(RESERVED.intersection(extras))
    if clashes:
        raise ValueError(
            f'Series "{series_key}": base_kwargs may not set {", ".join(clashes)}; '
            "these names are reserved for the job itself."
        )
    values: dict[str, Any] = _json_copy(extras, f'Series "{series_key}": base_kwargs')
    return values


def _decide(
    job: RegisteredJob, headers: dict[str, Any], extras: dict[str, Any], report: ScheduleReport
) -> JobOutcome:
    if job.spec.disabled:
        return JobOutcome(job.name, job.service, Decision.DISABLED)
    try:
        result = _ask_callback(job, headers, extras, report.added_params)
    except Exception:
        error = traceback.format_exc()
        logger.warning(
            "series %s: callback of job %s raised:\n%s", report.series_key, job.name, error
        )
        return JobOutcome(job.name, job.service, Decision.FAILED, error)
    try:
        wanted, injected = _interpret(job, result)
    except (ServiceDefinitionError, TypeError) as exc:
        logger.warning("series %s: %s", report.series_key, exc)
        return JobOutcome(job.name, job.service, Decision.FAILED, str(exc))
    if injected is not None:
        report.added_params[job.name] = injected
    if not wanted:
        return JobOutcome(job.name, job.service, Decision.SKIPPED)
    missing = _unscheduled_dependencies(job, report)
    if missing:
        error = (
            f'Job "{job.name}" of service "{job.service}" is wanted for series '
            f'"{report.series_key}" but depends on {missing}; it is not enqueued, as it '
            "would wait forever."
        )
        logger.warning("series %s: %s", report.series_key, error)
        return JobOutcome(job.name, job.service, Decision.FAILED, error)
    return JobOutcome(job.name, job.service, Decision.SCHEDULED)


def _ask_callback(
    job: RegisteredJob, headers: dict[str, Any], extras: dict[str, Any], added: dict[str, Any]
) -> object:
    arguments = {
        **extras,
        "jobName": job.name,
        "headers": copy.deepcopy(headers),
        "params": copy.deepcopy(job.spec.params),
        "added_params": added,
    }
    return call_with_keywords(job.callback, arguments)


def _interpret(job: RegisteredJob, result: object) -> tuple[bool, dict[str, Any] | None]:
    """``(wanted, injected params)`` from a callback's return value."""
    if isinstance(result, bool):
        return result, None
    if isinstance(result, tuple | list) and len(result) == 2 and isinstance(result[0], bool):
        wanted, injected = result
        if injected is None:
            return wanted, None
        if isinstance(injected, dict):
            what = f'Job "{job.name}": the params its callback added'
            copied: dict[str, Any] = _json_copy(injected, what)
            return wanted, copied
    shown = repr(result)
    raise ServiceDefinitionError(
        f'Job "{job.name}": callback "{job.spec.callback}" of service "{job.service}" returned '
        f"{shown[:200]}; expected True, False or (bool, dict)."
    )


def _unscheduled_dependencies(job: RegisteredJob, report: ScheduleReport) -> str:
    """The job's dependencies that are not scheduled, each with why, or ``""``."""
    decided = {outcome.job_name: outcome.decision for outcome in report.outcomes}
    missing = []
    for name in job.spec.depends_on:
        decision = decided.get(name)
        if decision is not Decision.SCHEDULED:
            missing.append(f'"{name}" ({_why_not(decision)})')
    return ", ".join(missing)


def _why_not(decision: Decision | None) -> str:
    if decision is Decision.SKIPPED:
        return "its callback returned False"
    if decision is Decision.FAILED:
        return "it failed"
    if decision is Decision.DISABLED:
        return "it is disabled"
    return "not among the jobs given to the scheduler"


def _enqueue(
    wanted: list[RegisteredJob],
    headers: dict[str, Any],
    extras: dict[str, Any],
    report: ScheduleReport,
    backend: Backend,
    after: list[str],
) -> list[Job]:
    if not wanted:
        return []
    added = _json_copy(report.added_params, f'Series "{report.series_key}": added_params')
    ids: dict[str, str] = {}
    graph: list[Job] = []
    for job in wanted:
        earlier = [ids[other.name] for other in wanted if _earlier(other, job)]
        queued = Job(
            function=RUNNER,
            kwargs=_worker_kwargs(job, headers, extras, added),
            name=job.name,
            priority=job.spec.priority,
            timeout_s=job.spec.timeout_s,
            depends_on=list(
                dict.fromkeys([*after, *earlier, *(ids[name] for name in job.spec.depends_on)])
            ),
            meta=_meta(job, report.series_key),
        )
        ids[job.name] = queued.id
        graph.append(queued)
    enqueued = backend.enqueue_many(graph)
    for outcome in report.outcomes:
        outcome.job_id = ids.get(outcome.job_name)
    return enqueued


def _meta(job: RegisteredJob, series_key: str) -> dict[str, Any]:
    """The job's meta: its service, series and channel, and ``deidentify`` when its
    results are to be sent de-identified (read by the node when the job ends)."""
    meta: dict[str, Any] = {"service": job.service, "series": series_key}
    meta["channel"] = job.spec.channel
    return meta | ({"deidentify": True} if job.spec.deidentify else {})


def _earlier(job: RegisteredJob, than: RegisteredJob) -> bool:
    return STAGES.index(job.spec.stage) < STAGES.index(than.spec.stage)


def _worker_kwargs(
    job: RegisteredJob, headers: dict[str, Any], extras: dict[str, Any], added: dict[str, Any]
) -> dict[str, Any]:
    service = {
        "name": job.service,
        "worker": job.spec.worker,
        "module_dir": str(job.module_dir),
        "venv_dir": str(job.venv_dir) if job.venv_dir is not None else None,
    }
    return copy.deepcopy(
        {
            **extras,
            "service": service,
            "jobName": job.name,
            "headers": headers,
            "params": job.spec.params,
            "added_params": added,
        }
    )


def _json_copy(value: Any, what: str) -> Any:
    """A JSON-clean deep copy of ``value`` (paths, sequences and person names converted)."""
    try:
        return json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be sent to a worker as JSON: {exc}.") from exc


def _json_default(value: object) -> object:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence | Set) and not isinstance(value, bytes | bytearray):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} is not JSON")
