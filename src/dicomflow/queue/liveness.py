"""Which embedded workers are alive, and what becomes of the jobs of those that are not.

Each running worker has a session row with a heartbeat it refreshes every
``heartbeat_s``. A started job whose worker's heartbeat is older than
``stale_after_s`` (the worker was ``kill -9``-ed, or its machine stopped) is
abandoned: it is queued again when attempts remain (the lost one counts),
failed otherwise, or canceled if a cancellation was asked for. Any worker or
backend call may find and settle abandoned jobs.
"""

import logging
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass

from dicomflow.queue.database import next_seq, transaction
from dicomflow.queue.graph import release_dependants
from dicomflow.queue.job import backoff_delay_s

logger = logging.getLogger(__name__)

ABANDONED = """
SELECT j.id, j.attempts, j.retries, j.retry_backoff_s, j.cancel_requested, j.worker
FROM jobs j LEFT JOIN workers w ON w.session = j.worker_session
WHERE j.status = 'started' AND (w.heartbeat IS NULL OR w.heartbeat < :oldest)
"""


@dataclass(frozen=True)
class Session:
    """One run of one worker."""

    id: str
    name: str


def register(connection: sqlite3.Connection, name: str) -> Session:
    session = Session(uuid.uuid4().hex, name)
    now = time.time()
    with transaction(connection):
        connection.execute(
            "INSERT INTO workers (session, name, hostname, pid, started_at, heartbeat)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session.id, name, socket.gethostname(), os.getpid(), now, now),
        )
    return session


def beat(connection: sqlite3.Connection, session: Session) -> None:
    """Record that ``session``'s worker is alive."""
    with transaction(connection):
        connection.execute(
            "UPDATE workers SET heartbeat = ? WHERE session = ?", (time.time(), session.id)
        )


def unregister(connection: sqlite3.Connection, session: Session) -> None:
    with transaction(connection):
        connection.execute("DELETE FROM workers WHERE session = ?", (session.id,))


def recover_abandoned(connection: sqlite3.Connection, stale_after_s: float) -> int:
    """Settle the started jobs of workers silent for ``stale_after_s``; how many there were."""
    values = {"oldest": time.time() - stale_after_s}
    if connection.execute(ABANDONED + " LIMIT 1", values).fetchone() is None:
        return 0  # the common case, checked without the write lock
    with transaction(connection):
        rows = connection.execute(ABANDONED, values).fetchall()
        for row in rows:
            _settle(connection, row, stale_after_s)
        connection.execute(
            "DELETE FROM workers WHERE heartbeat < :oldest AND session NOT IN"
            " (SELECT worker_session FROM jobs WHERE status = 'started'"
            " AND worker_session IS NOT NULL)",
            values,
        )
    return len(rows)


def _settle(connection: sqlite3.Connection, row: sqlite3.Row, stale_after_s: float) -> None:
    now = time.time()
    error = (
        f'Worker "{row["worker"]}" stopped responding while running attempt {row["attempts"]}'
        f" (no heartbeat for {stale_after_s:g} s)."
    )
    if not row["cancel_requested"] and row["attempts"] <= row["retries"]:
        not_before = now + backoff_delay_s(row["retry_backoff_s"], row["attempts"])
        connection.execute(
            "UPDATE jobs SET status = 'queued', seq = ?, not_before = ?, ended_at = ?, error = ?"
            " WHERE id = ?",
            (next_seq(connection), not_before, now, error, row["id"]),
        )
        logger.warning("job %s: %s Queued again.", row["id"], error)
        return
    status = "canceled" if row["cancel_requested"] else "failed"
    connection.execute(
        "UPDATE jobs SET status = ?, ended_at = ?, error = ? WHERE id = ?",
        (status, now, error, row["id"]),
    )
    logger.warning("job %s: %s Now %s.", row["id"], error, status)
    release_dependants(connection, row["id"])
