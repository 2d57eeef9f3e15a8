"""The embedded queue: SQLite in WAL mode, workers as local processes, no server.

``EmbeddedBackend("sqlite:///var/lib/dicomflow/jobs.db")``. Everything is in
the database file, so the queue survives ``kill -9`` of any of its processes:
a job that was running is found abandoned by the next worker (see
:mod:`dicomflow.queue.embedded.liveness`) and retried or failed. Several processes may
use one database: each opens its own connection, and every change is one
``BEGIN IMMEDIATE`` transaction. The database must be on a local disk.

Finished and canceled jobs (and their logs in ``log_dir``) are removed
``result_ttl_s`` after they ended, as RQ expires them, unless a job that has not
ended depends on them; failed and timed-out jobs stay until requeued. Any
backend call purges at most once an hour.
"""

import dataclasses
import glob
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from dicomflow.errors import QueueError, UnknownDependencyError
from dicomflow.queue.embedded import dependencies
from dicomflow.queue.embedded.database import (
    COLUMNS,
    KIND,
    connect,
    job_values,
    next_seq,
    row_to_job,
    transaction,
)
from dicomflow.queue.embedded.liveness import gone_workers, recover_abandoned, settle_dead_worker
from dicomflow.queue.embedded.worker import EmbeddedWorker
from dicomflow.queue.job import TERMINAL, UNSUCCESSFUL, Job, JobStatus
from dicomflow.queue.options import QueueOptions, split_url

logger = logging.getLogger(__name__)

SCHEME = "sqlite://"
STATUS_CHUNK = 500  # ids per query (SQLite allows 999 parameters in older builds)
PURGE_EVERY_S = 3600.0
PURGED = (JobStatus.FINISHED, JobStatus.CANCELED)  # failed and timed-out jobs stay


def _sql_list(statuses: Iterable[JobStatus]) -> str:
    return ", ".join(f"'{status.value}'" for status in sorted(statuses))


PURGE = (
    f"SELECT id FROM jobs WHERE status IN ({_sql_list(PURGED)}) AND ended_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM dependencies AS d JOIN jobs AS later ON later.id ="
    f" d.job_id WHERE d.depends_on = jobs.id AND later.status NOT IN ({_sql_list(TERMINAL)}))"
)
INSERT = (
    "INSERT INTO jobs (id, seq, name, function, kwargs, priority, timeout_s, depends_on,"
    " allow_dependency_failure, retries, retry_backoff_s, status, created_at, meta) VALUES"
    " (:id, :seq, :name, :function, :kwargs, :priority, :timeout_s, :depends_on,"
    " :allow_dependency_failure, :retries, :retry_backoff_s, :status, :created_at, :meta)"
)


def database_path(url: str) -> Path:
    """``sqlite:///abs/path/jobs.db`` (or ``sqlite:////abs/...``) -> the database file."""
    if not url.startswith(SCHEME) or len(url) == len(SCHEME):
        raise QueueError(f'Queue URL "{url}" is not of the form sqlite:///path/to/jobs.db.')
    path = url[len(SCHEME) :]
    return Path("/" + path.lstrip("/") if path.startswith("//") else path).absolute()


class EmbeddedBackend:
    """A job queue in one SQLite file (see the module documentation)."""

    def __init__(self, url: str, *, options: QueueOptions | None = None) -> None:
        base, parsed = split_url(url, keep_unknown=False)
        self.url = url
        self.options = options or parsed
        self.path = database_path(base)
        self._lock = threading.Lock()
        self._connection = connect(self.path, self.options.synchronous)
        self._next_recovery = 0.0
        self._next_purge = time.monotonic() + 60.0  # not while a node is starting

    def enqueue(self, job: Job) -> Job:
        return self.enqueue_many([job])[0]

    def enqueue_many(self, jobs: Iterable[Job]) -> list[Job]:
        batch = list(jobs)
        for job in batch:
            job.validate()
        with self._lock, transaction(self._connection) as connection:
            seq = next_seq(connection)
            return [_insert(connection, job, seq + index) for index, job in enumerate(batch)]

    def fetch(self, job_id: str) -> Job | None:
        self.recover()
        with self._lock:
            row = self._connection.execute(
                f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return None if row is None else row_to_job(row)

    def statuses(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of each known job of ``job_ids`` (one query per 500 ids): what a
        watcher of many jobs asks every poll, without decoding whole jobs."""
        self.recover()
        found: dict[str, JobStatus] = {}
        for start in range(0, len(job_ids), STATUS_CHUNK):
            chunk = list(job_ids[start : start + STATUS_CHUNK])
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._connection.execute(
                    f"SELECT id, status FROM jobs WHERE id IN ({marks})", chunk
                ).fetchall()
            found.update((str(job_id), JobStatus(status)) for job_id, status in rows)
        return found

    def jobs(self, status: JobStatus | None = None, limit: int = 1000) -> list[Job]:
        self.recover()
        where, values = ("WHERE status = ?", (JobStatus(status).value,)) if status else ("", ())
        query = f"SELECT {COLUMNS} FROM jobs {where} ORDER BY created_at DESC, seq DESC LIMIT ?"
        with self._lock:
            rows = self._connection.execute(query, (*values, limit)).fetchall()
        return [row_to_job(row) for row in rows]

    def counts(self) -> dict[tuple[JobStatus, str], int]:
        """How many jobs are in each status, per kind (``meta["kind"]``; ``"service"`` for
        jobs naming a registry service; ``"other"``), read from an index."""
        self.recover()
        query = f"SELECT status, {KIND} AS kind, COUNT(*) FROM jobs GROUP BY status, kind"
        with self._lock:
            rows = self._connection.execute(query).fetchall()
        return {(JobStatus(status), str(kind)): int(count) for status, kind, count in rows}

    def cancel(self, job_id: str) -> Job:
        with self._lock, transaction(self._connection) as connection:
            job = _known(connection, job_id)
            if job.status in (JobStatus.QUEUED, JobStatus.DEFERRED):
                connection.execute(
                    "UPDATE jobs SET status = 'canceled', ended_at = ? WHERE id = ?",
                    (time.time(), job_id),
                )
                dependencies.release_dependants(connection, job_id)
            elif job.status is JobStatus.STARTED:
                connection.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                raise QueueError(f"Job {job.label} is {job.status.value}; it cannot be canceled.")
        return self._fetched(job_id)

    def requeue(self, job_id: str) -> Job:
        with self._lock, transaction(self._connection) as connection:
            job = _known(connection, job_id)
            if job.status not in UNSUCCESSFUL:
                raise QueueError(f"Job {job.label} is {job.status.value}; it cannot be requeued.")
            status, reason = dependencies.evaluate(connection, job_id, job.allow_dependency_failure)
            if status is not JobStatus.QUEUED:
                reason = reason or "its dependencies have not all ended."
                raise QueueError(f"Job {job.label} cannot be requeued: {reason}")
            connection.execute(
                "UPDATE jobs SET status = 'queued', attempts = 0, interruptions = 0, seq = ?,"
                " not_before = 0,"
                " started_at = NULL, ended_at = NULL, worker = NULL, worker_session = NULL,"
                " cancel_requested = 0, error = NULL, log_tail = NULL, result = NULL"
                " WHERE id = ?",
                (next_seq(connection), job_id),
            )
        return self._fetched(job_id)

    def worker(self, *, name: str | None = None) -> EmbeddedWorker:
        return EmbeddedWorker(self.path, self.options, name=name)

    def recover(self, *, force: bool = False) -> int:
        """Settle jobs abandoned by dead workers (once per ``heartbeat_s`` unless ``force``),
        and purge expired jobs (once per hour)."""
        now = time.monotonic()
        if not force and now < self._next_recovery:
            return 0
        self._next_recovery = now + self.options.heartbeat_s
        if now >= self._next_purge:
            self._next_purge = now + PURGE_EVERY_S
            try:
                self.purge()
            except (sqlite3.Error, OSError):
                logger.exception("queue: purging expired jobs failed; retried in an hour")
        with self._lock:
            return recover_abandoned(
                self._connection, self.options.stale_after_s, self.options.max_interruptions
            )

    def settle_dead_worker(self, name: str) -> int:
        """Queue again (or fail, past ``max_interruptions``) at once the jobs of the worker
        ``name``, whose process is known to have ended; how many there were."""
        with self._lock:
            return settle_dead_worker(self._connection, name, self.options.max_interruptions)

    def settle_gone_workers(self, prefix: str) -> int:
        """Settle at once the jobs of the workers of this host named ``prefix…`` whose
        process no longer exists; how many jobs there were."""
        with self._lock:
            names = gone_workers(self._connection, prefix)
        return sum(self.settle_dead_worker(name) for name in names)

    def purge(self, *, now: float | None = None) -> int:
        """Remove finished and canceled jobs that ended ``result_ttl_s`` before ``now``
        (and their logs), unless a job that has not ended depends on them; return how
        many were removed."""
        cutoff = (time.time() if now is None else now) - self.options.result_ttl_s
        with self._lock, transaction(self._connection) as connection:
            ids = [str(row[0]) for row in connection.execute(PURGE, (cutoff,))]
            for start in range(0, len(ids), STATUS_CHUNK):
                chunk = ids[start : start + STATUS_CHUNK]
                marks = ",".join("?" * len(chunk))
                connection.execute(f"DELETE FROM dependencies WHERE job_id IN ({marks})", chunk)
                connection.execute(f"DELETE FROM dependencies WHERE depends_on IN ({marks})", chunk)
                connection.execute(f"DELETE FROM jobs WHERE id IN ({marks})", chunk)
        if self.options.log_dir is not None:
            logs = Path(self.options.log_dir)
            for job_id in ids:
                for log in logs.glob(f"{glob.escape(job_id)}.*.log"):
                    log.unlink(missing_ok=True)
        if ids:
            logger.info(
                "queue: removed %d job(s) that ended over %.0f s ago",
                len(ids),
                self.options.result_ttl_s,
            )
        return len(ids)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _fetched(self, job_id: str) -> Job:
        job = self.fetch(job_id)
        if job is None:
            raise QueueError(f"Job {job_id} vanished from the queue.")
        return job


def _known(connection: sqlite3.Connection, job_id: str) -> Job:
    row = connection.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise QueueError(f"Job {job_id} is not known to the queue.")
    return row_to_job(row)


def _insert(connection: sqlite3.Connection, job: Job, seq: int) -> Job:
    """Add ``job`` (queued, deferred, or failed if a dependency already failed)."""
    for dependency in job.depends_on:
        if connection.execute("SELECT 1 FROM jobs WHERE id = ?", (dependency,)).fetchone() is None:
            raise UnknownDependencyError(
                f"Job {job.label} depends on job {dependency}, which the queue does not know"
                " (enqueue a dependency before, or in the same call ahead of, its dependants)."
            )
    status = JobStatus.DEFERRED if job.depends_on else JobStatus.QUEUED
    try:
        connection.execute(INSERT, job_values(job, seq, status))
    except sqlite3.IntegrityError:
        raise QueueError(f"Job id {job.id} is already in the queue.") from None
    if not job.depends_on:
        return dataclasses.replace(job, status=status, attempts=0)
    connection.executemany(
        "INSERT OR IGNORE INTO dependencies (job_id, depends_on) VALUES (?, ?)",
        [(job.id, dependency) for dependency in job.depends_on],
    )
    return _settle_new(connection, job)


def _settle_new(connection: sqlite3.Connection, job: Job) -> Job:
    status, reason = dependencies.evaluate(connection, job.id, job.allow_dependency_failure)
    if status is JobStatus.QUEUED:
        connection.execute("UPDATE jobs SET status = 'queued' WHERE id = ?", (job.id,))
    elif status is JobStatus.FAILED:
        dependencies.fail(connection, job.id, reason)
    ended = time.time() if status in TERMINAL else None
    return dataclasses.replace(job, status=status, attempts=0, error=reason, ended_at=ended)
