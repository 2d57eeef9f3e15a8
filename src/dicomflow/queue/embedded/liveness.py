"""Which embedded workers are alive, and what becomes of the jobs of those that are not.

Each running worker has a session row with a heartbeat it refreshes every
``heartbeat_s``. A started job whose worker's heartbeat is older than
``stale_after_s`` (the worker was ``kill -9``-ed, or its machine stopped), or
whose worker is known to have ended (:func:`settle_dead_worker`), is abandoned:
the worker's death is not the job's failure, so it is queued again without
using up its retries, up to ``max_interruptions`` times (a job that kills its
worker each time then fails), or canceled if a cancellation was asked for. Any
worker or backend call may find and settle abandoned jobs.
"""

import logging
import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dicomflow.queue.embedded.database import next_seq, transaction
from dicomflow.queue.embedded.dependencies import release_dependants
from dicomflow.queue.job import backoff_delay_s

logger = logging.getLogger(__name__)

SETTLED = (
    "SELECT j.id, j.attempts, j.interruptions, j.retry_backoff_s, j.cancel_requested, j.worker"
)
ABANDONED = f"""
{SETTLED} FROM jobs j LEFT JOIN workers w ON w.session = j.worker_session
WHERE j.status = 'started' AND (w.heartbeat IS NULL OR w.heartbeat < :oldest)
"""
OF_WORKER = f"""
{SETTLED} FROM jobs j JOIN workers w ON w.session = j.worker_session
WHERE j.status = 'started' AND w.name = :name
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


def recover_abandoned(
    connection: sqlite3.Connection, stale_after_s: float, max_interruptions: int
) -> int:
    """Settle the started jobs of workers silent for ``stale_after_s``; how many there were."""
    values = {"oldest": time.time() - stale_after_s}
    if connection.execute(ABANDONED + " LIMIT 1", values).fetchone() is None:
        return 0  # the common case, checked without the write lock
    why = f"stopped responding (no heartbeat for {stale_after_s:g} s)"
    with transaction(connection):
        rows = connection.execute(ABANDONED, values).fetchall()
        for row in rows:
            _settle(connection, row, why, max_interruptions)
        connection.execute(
            "DELETE FROM workers WHERE heartbeat < :oldest AND session NOT IN"
            " (SELECT worker_session FROM jobs WHERE status = 'started'"
            " AND worker_session IS NOT NULL)",
            values,
        )
    return len(rows)


def settle_dead_worker(connection: sqlite3.Connection, name: str, max_interruptions: int) -> int:
    """Settle at once the started jobs of the worker ``name``, whose process has ended (call
    it before a new worker of that name starts); how many there were."""
    with transaction(connection):
        rows = connection.execute(OF_WORKER, {"name": name}).fetchall()
        for row in rows:
            _settle(connection, row, "ended", max_interruptions)
        connection.execute("DELETE FROM workers WHERE name = ?", (name,))
    return len(rows)


def gone_workers(connection: sqlite3.Connection, prefix: str) -> list[str]:
    """The names starting with ``prefix`` of workers registered from this host whose
    process no longer exists (a node's local workers, after the node was killed with them)."""
    rows = connection.execute(
        "SELECT DISTINCT name, pid FROM workers WHERE hostname = ? AND substr(name, 1, ?) = ?",
        (socket.gethostname(), len(prefix), prefix),
    ).fetchall()
    return sorted({str(name) for name, pid in rows if not _running(int(pid))})


def _running(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed and not yet reaped by
    whoever inherited it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True  # not readable: assume it runs, and wait for its heartbeat to go stale
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _settle(
    connection: sqlite3.Connection, row: sqlite3.Row, why: str, max_interruptions: int
) -> None:
    now = time.time()
    interruptions = row["interruptions"] + 1
    error = f'Worker "{row["worker"]}" {why} while running attempt {row["attempts"]}.'
    if not row["cancel_requested"] and interruptions <= max_interruptions:
        not_before = now + backoff_delay_s(row["retry_backoff_s"], interruptions)
        connection.execute(
            "UPDATE jobs SET status = 'queued', seq = ?, not_before = ?, ended_at = ?, error = ?,"
            " interruptions = ? WHERE id = ?",
            (next_seq(connection), not_before, now, error, interruptions, row["id"]),
        )
        logger.warning(
            "job %s: %s Queued again (interruption %d of at most %d).",
            row["id"],
            error,
            interruptions,
            max_interruptions,
        )
        return
    status = "canceled" if row["cancel_requested"] else "failed"
    if not row["cancel_requested"]:
        error += (
            f" Its workers died under it {interruptions} times, more than max_interruptions"
            f" ({max_interruptions}) allows: it is not queued again."
        )
    connection.execute(
        "UPDATE jobs SET status = ?, ended_at = ?, error = ?, interruptions = ? WHERE id = ?",
        (status, now, error, interruptions, row["id"]),
    )
    logger.warning("job %s: %s Now %s.", row["id"], error, status)
    release_dependants(connection, row["id"])
