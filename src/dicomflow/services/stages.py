"""The node's ``scheduler.json``: the seed scheduler's own ``settings.json``, unchanged.

Copy the seed scheduler's ``settings.json`` to ``{services root}/scheduler.json``.
Its fields:

=================  =============================================================
``headerFields``   the header names the callbacks and workers get (all of them
                   when the field is missing); see
                   :mod:`dicomflow.services.consumer` for the names there are
``fullTags``       ``true``: every header, whatever ``headerFields`` says
``preServices``    jobs (as in a service's ``settings.json``) run before the
                   registry's jobs: each registry job depends on them
``postServices``   jobs run after the registry's jobs, depending on them all
=================  =============================================================

A pre or post job belongs to the service its worker names
(``"base.storageManager.worker"`` → ``base``): its callback comes from that
service's registry package, its worker from its module folder. Such a service
(the seed's ``base``) may have no ``settings.json`` of its own.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.definitions import job_specs
from dicomflow.services.job_spec import JobSpec, Stage

SCHEDULER_FILE = "scheduler.json"
FIELDS = ("headerFields", "fullTags", "preServices", "postServices")


@dataclass(frozen=True)
class SchedulerSettings:
    """What ``scheduler.json`` says; the defaults when there is none."""

    header_fields: tuple[str, ...] | None = None
    full_tags: bool = False
    jobs: list[JobSpec] = field(default_factory=list)


def read_scheduler_settings(root: Path) -> SchedulerSettings:
    """Read ``root/scheduler.json`` (defaults when it does not exist).

    Raises:
        ServiceDefinitionError: naming the file and the field, for any problem.
    """
    path = root / SCHEDULER_FILE
    if not path.exists():
        return SchedulerSettings()
    data = _object(path)
    return SchedulerSettings(
        header_fields=_header_fields(path, data),
        full_tags=_full_tags(path, data),
        jobs=_jobs(path, data, "preServices", Stage.PRE)
        + _jobs(path, data, "postServices", Stage.POST),
    )


def _object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceDefinitionError(f"{path}: cannot be read: {exc}.") from exc
    except json.JSONDecodeError as exc:
        message = f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
        raise ServiceDefinitionError(message) from exc
    if not isinstance(data, dict):
        raise ServiceDefinitionError(f"{path}: expected a JSON object with {', '.join(FIELDS)}.")
    for name in data:
        if name not in FIELDS:
            raise ServiceDefinitionError(
                f'{path}: field "{name}" is not a known field; known fields: {", ".join(FIELDS)}.'
            )
    return data


def _header_fields(path: Path, data: dict[str, Any]) -> tuple[str, ...] | None:
    value = data.get("headerFields")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ServiceDefinitionError(
            f'{path}: field "headerFields" is {json.dumps(value)[:80]}; expected a list of names.'
        )
    return tuple(value)


def _full_tags(path: Path, data: dict[str, Any]) -> bool:
    value = data.get("fullTags", False)
    if not isinstance(value, bool):
        raise ServiceDefinitionError(
            f'{path}: field "fullTags" is {json.dumps(value)[:80]}; expected true or false.'
        )
    return value


def _jobs(path: Path, data: dict[str, Any], name: str, stage: Stage) -> list[JobSpec]:
    entries = data.get(name)
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ServiceDefinitionError(
            f'{path}: field "{name}" is {json.dumps(entries)[:80]}; expected a list of job objects.'
        )
    return job_specs(path, entries, "", stage)
