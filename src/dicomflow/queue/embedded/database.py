"""The embedded queue's SQLite database: schema, connections, rows <-> jobs.

WAL mode lets readers work while one process writes; every change happens in
a ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front, so two
workers never claim the same job and no transaction fails half-way for lack
of a lock (they wait up to ``BUSY_TIMEOUT_S``). Each process, and each thread
of a process, uses its own connection.
"""

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dicomflow.queue.job import PRIORITY_ORDER, Job, JobKind, JobStatus, Priority

BUSY_TIMEOUT_S = 60.0

#: A job's kind (:func:`~dicomflow.queue.job.job_kind`) as SQL. Indexed with the status,
#: so that counting jobs per status and kind reads the index only.
KIND = (
    "CASE WHEN json_type(meta, '$.kind') = 'text' AND json_extract(meta, '$.kind') <> ''"
    " THEN json_extract(meta, '$.kind')"
    f" WHEN json_type(meta, '$.service') IS NOT NULL THEN '{JobKind.SERVICE}'"
    f" ELSE '{JobKind.OTHER}' END"
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    function TEXT NOT NULL,
    kwargs TEXT NOT NULL,
    priority INTEGER NOT NULL,
    timeout_s REAL NOT NULL,
    depends_on TEXT NOT NULL,
    allow_dependency_failure INTEGER NOT NULL,
    retries INTEGER NOT NULL,
    retry_backoff_s REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    interruptions INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    not_before REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    worker TEXT,
    worker_session TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    log_tail TEXT,
    result TEXT,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (priority, seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (worker_session) WHERE status = 'started';
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_status_kind ON jobs (status, {kind});
CREATE TABLE IF NOT EXISTS dependencies (
    job_id TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (depends_on, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dependencies_of_job ON dependencies (job_id);
CREATE TABLE IF NOT EXISTS workers (
    session TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat REAL NOT NULL
);
""".replace("{kind}", KIND)

COLUMNS = (
    "id, seq, name, function, kwargs, priority, timeout_s, depends_on, allow_dependency_failure,"
    " retries, retry_backoff_s, attempts, interruptions, status, not_before, created_at,"
    " started_at, ended_at, worker, worker_session, cancel_requested, error, log_tail, result, meta"
)


def connect(path: Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open (creating if needed) the queue database at ``path``, readable by this user
    alone (its jobs name patients' files; SQLite gives its WAL the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    connection = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous.upper()}")
    with transaction(connection):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        _add_missing_columns(connection)
    return connection


ADDED_COLUMNS = {"interruptions": "INTEGER NOT NULL DEFAULT 0"}
"""Columns added since the first schema: added to a database made before them."""


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    present = {row["name"] for row in connection.execute("PRAGMA table_info(jobs)")}
    for name, declaration in ADDED_COLUMNS.items():
        if name not in present:
            connection.execute(f"ALTER TABLE jobs ADD COLUMN {name} {declaration}")


@contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the database's write lock from its start."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def next_seq(connection: sqlite3.Connection) -> int:
    """The next position in the queues' FIFO order (call inside a transaction)."""
    row = connection.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()
    return int(row[0])


def job_values(job: Job, seq: int, status: JobStatus) -> dict[str, Any]:
    """The row of a newly queued ``job``."""
    return {
        "id": job.id,
        "seq": seq,
        "name": job.name,
        "function": job.function,
        "kwargs": json.dumps(job.kwargs),
        "priority": PRIORITY_ORDER.index(job.priority),
        "timeout_s": float(job.timeout_s),
        "depends_on": json.dumps(list(job.depends_on)),
        "allow_dependency_failure": int(job.allow_dependency_failure),
        "retries": job.retries,
        "retry_backoff_s": float(job.retry_backoff_s),
        "status": status.value,
        "created_at": job.created_at,
        "meta": json.dumps(job.meta),
    }


def row_to_job(row: sqlite3.Row) -> Job:
    """The job a row of ``jobs`` describes."""
    return Job(
        function=row["function"],
        kwargs=json.loads(row["kwargs"]),
        name=row["name"],
        id=row["id"],
        priority=Priority(PRIORITY_ORDER[row["priority"]]),
        timeout_s=row["timeout_s"],
        depends_on=json.loads(row["depends_on"]),
        allow_dependency_failure=bool(row["allow_dependency_failure"]),
        retries=row["retries"],
        retry_backoff_s=row["retry_backoff_s"],
        attempts=row["attempts"],
        interruptions=row["interruptions"],
        status=JobStatus(row["status"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        worker=row["worker"],
        error=row["error"],
        log_tail=row["log_tail"],
        result=None if row["result"] is None else json.loads(row["result"]),
        meta=json.loads(row["meta"]),
    )
