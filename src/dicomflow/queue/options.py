"""How a queue and its workers behave: intervals, thresholds, where logs go.

Options travel inside the queue URL, so that one string configures every worker
on every machine: ``sqlite:///var/lib/dicomflow/jobs.db?heartbeat_s=2&stale_after_s=10``.
Parameters the queue does not know are an error for ``sqlite://``; for
``redis://`` they are left in the URL for the Redis client.
"""

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode

from dicomflow.errors import QueueError

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024
MINIMUM_OUTPUT_LIMIT_BYTES = 4096
INTEGER_OPTIONS = ("memory_limit_bytes", "output_limit_bytes", "max_interruptions")


@dataclass(frozen=True)
class QueueOptions:
    """Tunable behaviour shared by both backends (all durations in seconds)."""

    heartbeat_s: float = 5.0
    """A worker records that it is alive this often, also while a job runs."""
    stale_after_s: float = 30.0
    """A started job whose worker has been silent this long is abandoned: retried or failed."""
    poll_s: float = 0.05
    """An idle worker looks for ready jobs this often."""
    check_s: float = 0.25
    """While a job runs, its worker checks for cancellation this often."""
    result_ttl_s: float = 7 * 86400.0
    """How long finished (and, on the embedded queue, canceled) jobs, their results and
    logs are kept after they ended; failed jobs are kept until requeued or removed."""
    log_dir: str | None = None
    """Keep each attempt's full log as ``<log_dir>/<job id>.<attempt>.log`` (default: not kept)."""
    preload: tuple[str, ...] = ()
    """Modules imported once by the worker's fork server, so that jobs start warm."""
    synchronous: str = "NORMAL"
    """SQLite only: ``PRAGMA synchronous`` (NORMAL survives any process crash; FULL, power loss)."""
    memory_limit_bytes: int | None = None
    """Private writable memory of each job process (``RLIMIT_DATA``); None: half the
    machine's physical memory; 0: no limit."""
    output_limit_bytes: int = OUTPUT_LIMIT_BYTES
    """Output of a job kept in its log: the first and the last half of this, with a count
    of the bytes left out between them; 0: all of it."""
    max_interruptions: int = 3
    """A job whose worker died under it (killed, lost its heartbeat) is queued again, without
    using up its retries, this many times; the next such death fails it (a job that kills
    its worker every time)."""

    def __post_init__(self) -> None:
        for name in ("heartbeat_s", "stale_after_s", "poll_s", "check_s", "result_ttl_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise QueueError(f"Queue option {name} is {value!r}; expected a number > 0.")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes < 0:
            raise QueueError(
                f"Queue option memory_limit_bytes is {self.memory_limit_bytes!r};"
                " expected 0 (no limit) or a number of bytes."
            )
        if 0 < self.output_limit_bytes < MINIMUM_OUTPUT_LIMIT_BYTES or self.output_limit_bytes < 0:
            raise QueueError(
                f"Queue option output_limit_bytes is {self.output_limit_bytes!r}; expected 0"
                f" (keep everything) or at least {MINIMUM_OUTPUT_LIMIT_BYTES}."
            )
        if isinstance(self.max_interruptions, bool) or not isinstance(self.max_interruptions, int):
            raise QueueError(
                f"Queue option max_interruptions is {self.max_interruptions!r}; expected an int."
            )
        if self.max_interruptions < 0:
            raise QueueError(
                f"Queue option max_interruptions is {self.max_interruptions}; expected >= 0."
            )
        if self.synchronous.upper() not in SYNCHRONOUS_MODES:
            raise QueueError(
                f'Queue option synchronous is "{self.synchronous}"; '
                f"expected one of {', '.join(SYNCHRONOUS_MODES)}."
            )

    def replace(self, **changes: Any) -> "QueueOptions":
        return dataclasses.replace(self, **changes)

    def job_memory_limit(self) -> int:
        """The memory limit of each job process in bytes; 0 for none."""
        if self.memory_limit_bytes is not None:
            return self.memory_limit_bytes
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def split_url(url: str, *, keep_unknown: bool) -> tuple[str, QueueOptions]:
    """Separate the queue options from ``url``: ``(url without them, options)``."""
    base, _, query = url.partition("?")
    known = {field.name: field for field in fields(QueueOptions)}
    values: dict[str, Any] = {}
    unknown: list[tuple[str, str]] = []
    for key, text in parse_qsl(query, keep_blank_values=True):
        if key not in known:
            if not keep_unknown:
                raise QueueError(f'Queue URL "{url}": unknown option "{key}".')
            unknown.append((key, text))
            continue
        values[key] = _parse(url, key, text)
    rest = f"{base}?{urlencode(unknown)}" if unknown else base
    return rest, QueueOptions(**values)


def _parse(url: str, key: str, text: str) -> Any:
    if key == "preload":
        return tuple(name for name in text.split(",") if name)
    if key == "log_dir":
        return text or None
    if key == "synchronous":
        return text
    try:
        return int(text) if key in INTEGER_OPTIONS else float(text)
    except ValueError:
        kind = "a whole number" if key in INTEGER_OPTIONS else "a number"
        message = f'Queue URL "{url}": option {key} is "{text}"; expected {kind}.'
        raise QueueError(message) from None
