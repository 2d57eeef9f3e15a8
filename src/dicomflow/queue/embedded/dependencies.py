"""Dependencies in the embedded queue: when a deferred job may run, or must fail.

A job waits (``deferred``) until each of its dependencies has finished; then it
is queued. If one fails, times out or is canceled, the job fails too, with the
reason, and so do the jobs that wait for it, transitively; a job declared with
``allow_dependency_failure`` instead runs once each of its dependencies has
ended, whatever the outcome. All functions run inside the caller's transaction.
"""

import sqlite3
import time

from dicomflow.queue.embedded.database import next_seq
from dicomflow.queue.job import TERMINAL, UNSUCCESSFUL, JobStatus

ENDINGS = {
    JobStatus.FAILED: "failed",
    JobStatus.TIMED_OUT: "timed out",
    JobStatus.CANCELED: "was canceled",
}


def evaluate(
    connection: sqlite3.Connection, job_id: str, allow_failure: bool
) -> tuple[JobStatus, str | None]:
    """Where ``job_id`` stands given its dependencies: queued, deferred, or failed (and why)."""
    rows = connection.execute(
        "SELECT d.depends_on, j.status FROM dependencies d"
        " JOIN jobs j ON j.id = d.depends_on WHERE d.job_id = ?",
        (job_id,),
    ).fetchall()
    statuses = [(row[0], JobStatus(row[1])) for row in rows]
    if not allow_failure:
        for dependency, status in statuses:
            if status in UNSUCCESSFUL:
                return JobStatus.FAILED, f"Dependency {dependency} {ENDINGS[status]}."
    settled = TERMINAL if allow_failure else {JobStatus.FINISHED}
    if all(status in settled for _, status in statuses):
        return JobStatus.QUEUED, None
    return JobStatus.DEFERRED, None


def release_dependants(connection: sqlite3.Connection, job_id: str) -> None:
    """Queue or fail the deferred jobs waiting for ``job_id``, which has just ended."""
    pending = [job_id]
    while pending:
        parent = pending.pop()
        waiting = connection.execute(
            "SELECT j.id, j.allow_dependency_failure FROM dependencies d"
            " JOIN jobs j ON j.id = d.job_id WHERE d.depends_on = ? AND j.status = 'deferred'",
            (parent,),
        ).fetchall()
        for dependant, allow_failure in waiting:
            status, reason = evaluate(connection, dependant, bool(allow_failure))
            if status is JobStatus.QUEUED:
                queue(connection, dependant)
            elif status is JobStatus.FAILED:
                fail(connection, dependant, reason)
                pending.append(dependant)


def queue(connection: sqlite3.Connection, job_id: str) -> None:
    """Put ``job_id`` at the back of its priority's queue, ready now."""
    connection.execute(
        "UPDATE jobs SET status = 'queued', seq = ?, not_before = 0 WHERE id = ?",
        (next_seq(connection), job_id),
    )


def fail(connection: sqlite3.Connection, job_id: str, reason: str | None) -> None:
    connection.execute(
        "UPDATE jobs SET status = 'failed', error = ?, ended_at = ? WHERE id = ?",
        (reason, time.time(), job_id),
    )
