"""One attempt of a job in the embedded queue: claiming it, and recording how it ended.

Claiming is one ``UPDATE ... RETURNING`` in a ``BEGIN IMMEDIATE`` transaction:
the highest-priority, oldest queued job whose retry time has come becomes
``started`` under the worker's session, so two workers never take the same
job. An ended attempt is recorded only while the job is still started under
that session (another worker may have taken over a job it thought abandoned),
in the same transaction as the claim of the worker's next job.
"""

import json
import logging
import sqlite3
import time

from dicomflow.queue.embedded.database import COLUMNS, next_seq, row_to_job, transaction
from dicomflow.queue.embedded.dependencies import release_dependants
from dicomflow.queue.embedded.liveness import Session
from dicomflow.queue.isolation import AttemptOutcome
from dicomflow.queue.job import Job, JobStatus

logger = logging.getLogger(__name__)

READY = "status = 'queued' AND not_before <= :now"
# The ready jobs in queue order, from the partial index: without INDEXED BY,
# SQLite may pick the (status, created_at) index and sort every queued job.
CLAIM = f"""
UPDATE jobs SET status = 'started', attempts = attempts + 1, started_at = :now, ended_at = NULL,
    worker = :name, worker_session = :session
WHERE id = (SELECT id FROM jobs INDEXED BY jobs_ready WHERE {READY} ORDER BY priority, seq LIMIT 1)
RETURNING {COLUMNS}
"""
RETRYABLE = (JobStatus.FAILED, JobStatus.TIMED_OUT)


def claim(connection: sqlite3.Connection, session: Session) -> Job | None:
    """Start the next ready job under ``session``; None if no job is ready."""
    values = _claim_values(session)
    ready = f"SELECT 1 FROM jobs INDEXED BY jobs_ready WHERE {READY} LIMIT 1"
    if connection.execute(ready, values).fetchone() is None:
        return None  # checked without the write lock: idle workers do not contend
    with transaction(connection):
        row = connection.execute(CLAIM, values).fetchone()
    return None if row is None else row_to_job(row)


def _claim_values(session: Session) -> dict[str, object]:
    return {"now": time.time(), "name": session.name, "session": session.id}


def has_pending(connection: sqlite3.Connection) -> bool:
    """Whether a job is queued (ready or waiting to be retried) or running."""
    query = "SELECT 1 FROM jobs WHERE status IN ('queued', 'started') LIMIT 1"
    return connection.execute(query).fetchone() is not None


def still_ours(connection: sqlite3.Connection, job_id: str, session: Session) -> bool:
    """Whether ``job_id`` still runs under ``session`` and nobody asked to cancel it."""
    row = connection.execute(
        "SELECT status, worker_session, cancel_requested FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    return row is not None and tuple(row) == ("started", session.id, 0)


def record(
    connection: sqlite3.Connection,
    job: Job,
    outcome: AttemptOutcome,
    session: Session,
    *,
    claim_next: bool = False,
) -> tuple[JobStatus | None, Job | None]:
    """Record how ``job``'s attempt ended and, with ``claim_next``, claim the next job.

    Returns the job's new status (None if it is no longer ours) and the next job.
    """
    with transaction(connection):
        status = _record(connection, job, outcome, session)
        row = connection.execute(CLAIM, _claim_values(session)).fetchone() if claim_next else None
    return status, None if row is None else row_to_job(row)


def _record(
    connection: sqlite3.Connection, job: Job, outcome: AttemptOutcome, session: Session
) -> JobStatus | None:
    row = connection.execute(
        "SELECT status, worker_session, cancel_requested FROM jobs WHERE id = ?", (job.id,)
    ).fetchone()
    if row is None or row["status"] != "started" or row["worker_session"] != session.id:
        logger.warning("job %s: taken over by another worker; this attempt is ignored", job.id)
        return None
    if _retries(job, outcome) and not row["cancel_requested"]:
        _retry(connection, job, outcome)
        return JobStatus.QUEUED
    _end(connection, job.id, outcome)
    release_dependants(connection, job.id)
    return outcome.status


def _retries(job: Job, outcome: AttemptOutcome) -> bool:
    """Whether the attempt's failure may be retried and the job has a retry left (a
    worker's death is not the job's failure: it does not count)."""
    failures = job.attempts - job.interruptions
    return outcome.status in RETRYABLE and outcome.retryable and failures <= job.retries


def _retry(connection: sqlite3.Connection, job: Job, outcome: AttemptOutcome) -> None:
    now = time.time()
    connection.execute(
        "UPDATE jobs SET status = 'queued', seq = ?, not_before = ?, ended_at = ?,"
        " error = ?, log_tail = ?, result = NULL WHERE id = ?",
        (
            next_seq(connection),
            now + job.retry_delay_s(job.attempts),
            now,
            outcome.error,
            outcome.log_tail,
            job.id,
        ),
    )


def _end(connection: sqlite3.Connection, job_id: str, outcome: AttemptOutcome) -> None:
    result = None if outcome.status is not JobStatus.FINISHED else json.dumps(outcome.result)
    connection.execute(
        "UPDATE jobs SET status = ?, ended_at = ?, error = ?, log_tail = ?, result = ?"
        " WHERE id = ?",
        (outcome.status.value, time.time(), outcome.error, outcome.log_tail, result, job_id),
    )


def give_back(connection: sqlite3.Connection, job: Job, session: Session) -> None:
    """Queue a job again whose worker is stopping while it runs: an interruption, not a
    failure, so the attempt does not count."""
    with transaction(connection):
        connection.execute(
            "UPDATE jobs SET status = 'queued', attempts = MAX(attempts - 1, 0),"
            " started_at = NULL, worker = NULL, worker_session = NULL"
            " WHERE id = ? AND status = 'started' AND worker_session = ?",
            (job.id, session.id),
        )
