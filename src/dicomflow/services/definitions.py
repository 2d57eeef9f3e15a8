"""A service's ``registry/settings.json``: read it, validate it, turn it into :class:`JobSpec`.

The file holds one job object or an array of them, with the seed's fields:

=================  =========================================================  ============
field              value                                                      default
=================  =========================================================  ============
``jobName``        non-blank string, unique across every installed service   required
``worker``         ``"module.function"`` or ``"module:qualname"``, found in  required
                   the service's ``module/`` folder
``callback``       name of a function in the service's registry ``.py`` file  required
``dependsOn``      a job name, a list of them, or ``null``                    ``[]``
``priority``       ``"high"``, ``"default"``, ``"low"`` (``"medium"``, an     ``"default"``
                   RQ queue name of the seed, is ``"default"``), or a number:
                   above 0 is high, 0 is default, below 0 is low
``timeout``        seconds as a number, or ``"90s"``, ``"10m"``, ``"1h"``,    ``"1h"``
                   ``"1d"`` (a bare ``"90"`` is seconds)
``params``         an object (or ``null``), handed to the callback and the    ``{}``
                   worker
``sortPosition``   a number; lower is scheduled first among ready jobs        ``0``
``description``    a string, for people only                                  ``""``
``channel``        the seed's worker channel (a queue name); recorded on the  ``"default"``
                   job, every dicomflow worker serves every channel
``disabled``       ``true``: the job is never scheduled (its dependants are   ``false``
                   refused, as they would wait for it forever)
``deidentify``     ``true``: the DICOM files of the job's output folder are   ``false``
                   de-identified (the node's ``deid_*`` settings) before the
                   node sends them to its endpoints
=================  =========================================================  ============

``worker`` and ``callback`` may also be written as in the seed,
``"service.function"``: the first part is a service's folder (``module/`` for
the worker, ``registry/`` for the callback) imported as a package under the
service's name, so ``"ms-sub.worker"`` works too.

Unknown fields are errors, not warnings: a misspelt ``dependson`` would
otherwise silently drop a dependency and let a job run on missing input.
Checks that need the other services (unknown dependencies, cycles, duplicate
names across services) live in :mod:`dicomflow.services.graph`;
:func:`load_settings` runs both.
"""

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomflow.errors import ServiceDefinitionError
from dicomflow.queue.job import Priority
from dicomflow.services.graph import check_graph
from dicomflow.services.job_spec import DEFAULT_TIMEOUT_S, JobSpec, Stage

TIMEOUT_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
FIELDS = (
    "jobName",
    "worker",
    "callback",
    "dependsOn",
    "priority",
    "timeout",
    "params",
    "sortPosition",
    "description",
    "channel",
    "disabled",
    "deidentify",
)
PRIORITY_ALIASES = {"medium": Priority.DEFAULT}
_TIMEOUT_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_TOP = r"[A-Za-z0-9_][\w-]*"  # a service's folder name may hold "-" ("ms-sub.worker")
_MODULE = rf"{_TOP}(?:\.[A-Za-z_]\w*)*"
_WORKER = re.compile(rf"^(?:{_MODULE}:{_DOTTED}|{_MODULE}\.[A-Za-z_]\w*)$")
_CALLBACK = re.compile(rf"^(?:[A-Za-z_]\w*|{_TOP}(?:\.[A-Za-z_]\w*)+)$")


def worker_parts(worker: str) -> tuple[str, str]:
    """Split a worker reference into module name and qualified name.

    ``"pkg.mod.function"`` gives ``("pkg.mod", "function")``; ``"pkg.mod:Class.method"``
    gives ``("pkg.mod", "Class.method")``.
    """
    if ":" in worker:
        module, _, qualname = worker.partition(":")
        return module, qualname
    module, _, function = worker.rpartition(".")
    return module, function


def load_settings(
    path: str | Path, service: str = "", *, installed: Sequence[JobSpec] = ()
) -> list[JobSpec]:
    """Read ``path`` and check its jobs against each other and the ``installed`` jobs.

    Raises:
        ServiceDefinitionError: naming the file, the job and the field, for any problem.
    """
    specs = read_settings(path, service)
    check_graph(specs, installed=installed)
    return specs


def read_settings(path: str | Path, service: str = "") -> list[JobSpec]:
    """Read ``path`` on its own: fields, types and duplicate names within the file.

    Raises:
        ServiceDefinitionError: naming the file, the job and the field, for any problem.
    """
    path = Path(path)
    return job_specs(path, _entries(path), service)


def job_specs(
    path: Path, entries: list[dict[str, Any]], service: str = "", stage: Stage = Stage.MAIN
) -> list[JobSpec]:
    """The jobs of ``entries`` (job objects read from ``path``); ``service`` empty means each
    job's service is the first part of its worker (``"base.storageManager.worker"``).

    Raises:
        ServiceDefinitionError: naming the file, the job and the field, for any problem.
    """
    specs = [
        _job_spec(_Entry(path, index, entry), service, stage) for index, entry in enumerate(entries)
    ]
    seen: set[str] = set()
    for spec in specs:
        if spec.job_name in seen:
            raise ServiceDefinitionError(f"{spec.where}: jobName is declared twice in the file.")
        seen.add(spec.job_name)
    return specs


def _entries(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServiceDefinitionError(f"{path}: cannot be read: {exc}.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}."
        raise ServiceDefinitionError(message) from exc
    entries = [data] if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise ServiceDefinitionError(
            f"{path}: holds {_shown(data)}; expected a job object or a non-empty array of them."
        )
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ServiceDefinitionError(
                f"{path}: entry {index + 1} is {_shown(entry)}; expected a job object."
            )
    return entries


@dataclass(frozen=True)
class _Entry:
    """One job object of a file, and how to name it in a message."""

    path: Path
    index: int
    values: dict[str, Any]

    @property
    def name(self) -> str:
        job_name = self.values.get("jobName")
        if isinstance(job_name, str) and job_name.strip():
            return f'job "{job_name}"'
        return f"entry {self.index + 1}"

    def error(self, name: str, expected: str) -> ServiceDefinitionError:
        value = _shown(self.values[name])
        return ServiceDefinitionError(
            f'{self.path}: {self.name}: field "{name}" is {value}; expected {expected}.'
        )

    def missing(self, name: str) -> ServiceDefinitionError:
        return ServiceDefinitionError(f'{self.path}: {self.name}: field "{name}" is missing.')


def _job_spec(entry: _Entry, service: str, stage: Stage = Stage.MAIN) -> JobSpec:
    _check_field_names(entry)
    worker = _worker(entry)
    return JobSpec(
        job_name=_job_name(entry),
        worker=worker,
        callback=_callback(entry),
        depends_on=_depends_on(entry),
        priority=_priority(entry),
        timeout_s=_timeout(entry),
        params=_params(entry),
        sort_position=_sort_position(entry),
        description=_description(entry),
        channel=_channel(entry),
        disabled=_flag(entry, "disabled"),
        deidentify=_flag(entry, "deidentify"),
        stage=stage,
        service=service or re.split(r"[.:]", worker)[0],
        source=entry.path,
    )


def _check_field_names(entry: _Entry) -> None:
    for name in entry.values:
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.6)
            hint = (
                f'; did you mean "{close[0]}"?'
                if close
                else f"; known fields: {', '.join(FIELDS)}."
            )
            raise ServiceDefinitionError(
                f'{entry.path}: {entry.name}: field "{name}" is not a known field{hint}'
            )


def _required_text(entry: _Entry, name: str) -> str:
    if name not in entry.values:
        raise entry.missing(name)
    value = entry.values[name]
    if not isinstance(value, str) or not value.strip():
        raise entry.error(name, "a non-blank string")
    return value.strip()


def _job_name(entry: _Entry) -> str:
    return _required_text(entry, "jobName")


def _worker(entry: _Entry) -> str:
    worker = _required_text(entry, "worker")
    if not _WORKER.match(worker):
        raise entry.error("worker", '"module.function" or "module:function"')
    return worker


def _callback(entry: _Entry) -> str:
    callback = _required_text(entry, "callback")
    if not _CALLBACK.match(callback):
        raise entry.error(
            "callback",
            'the name of a function in the registry\'s Python file, or "service.function"',
        )
    return callback


def _depends_on(entry: _Entry) -> tuple[str, ...]:
    value = entry.values.get("dependsOn")
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(_is_text(name) for name in names):
        raise entry.error("dependsOn", "a job name or a list of job names")
    return tuple(dict.fromkeys(name.strip() for name in names))


def _priority(entry: _Entry) -> Priority:
    value = entry.values.get("priority", Priority.DEFAULT.value)
    priority = parse_priority(value)
    if priority is None:
        raise entry.error("priority", '"high", "default", "low" or a number')
    return priority


def _timeout(entry: _Entry) -> float:
    value = entry.values.get("timeout", DEFAULT_TIMEOUT_S)
    seconds = parse_timeout(value)
    if seconds is None:
        raise entry.error("timeout", 'a positive number of seconds or "90s", "10m", "1h", "1d"')
    return seconds


def _params(entry: _Entry) -> dict[str, Any]:
    value = entry.values.get("params")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise entry.error("params", "an object")
    return value


def _sort_position(entry: _Entry) -> float:
    value = entry.values.get("sortPosition", 0)
    if not _is_number(value):
        raise entry.error("sortPosition", "a number")
    return float(value)


def _description(entry: _Entry) -> str:
    value = entry.values.get("description", "")
    if not isinstance(value, str):
        raise entry.error("description", "a string")
    return value


def _channel(entry: _Entry) -> str:
    value = entry.values.get("channel")
    if value is None:
        return "default"
    if not _is_text(value):
        raise entry.error("channel", "a non-blank string")
    return str(value).strip()


def _flag(entry: _Entry, name: str) -> bool:
    value = entry.values.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise entry.error(name, "true or false")
    return value


def parse_timeout(value: object) -> float | None:
    """Seconds for a ``timeout`` value (``90``, ``"90s"``, ``"10m"``, ``"1h"``, ``"1d"``),
    or ``None`` if it is not a positive duration."""
    if _is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
    elif isinstance(value, str) and (match := _TIMEOUT_TEXT.match(value)):
        seconds = float(match[1]) * TIMEOUT_UNITS[match[2].lower()]
    else:
        return None
    return seconds if seconds > 0 else None


def parse_priority(value: object) -> Priority | None:
    """The queue for a ``priority`` value, or ``None`` if it means nothing.

    Names are case-insensitive. Numbers follow "higher is more urgent": above 0 is
    high, 0 is default, below 0 is low.
    """
    if isinstance(value, str):
        name = value.strip().lower()
        if name in PRIORITY_ALIASES:
            return PRIORITY_ALIASES[name]
        try:
            return Priority(name)
        except ValueError:
            return None
    if _is_number(value):
        number = float(value)  # type: ignore[arg-type]
        return Priority.HIGH if number > 0 else Priority.LOW if number < 0 else Priority.DEFAULT
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _shown(value: object) -> str:
    """A value as the user wrote it in JSON, shortened to 80 characters."""
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
