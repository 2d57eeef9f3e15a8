"""What only the embedded (SQLite) backend promises: any backend call settles abandoned jobs."""

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_support import TEST_OPTIONS, WorkerProcess, job, wait_for, wait_for_file

from dicomflow.queue import JobStatus
from dicomflow.queue.embedded.backend import EmbeddedBackend
from dicomflow.queue.embedded.database import SCHEMA


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[EmbeddedBackend, str]]:
    url = f"sqlite:///{tmp_path}/jobs.db?{TEST_OPTIONS}"
    backend = EmbeddedBackend(url)
    yield backend, url
    backend.close()


def test_a_fetch_queues_the_job_of_a_killed_worker_again(embedded, tmp_path: Path) -> None:
    backend, url = embedded
    marker = tmp_path / "marker"
    hung = backend.enqueue(job("hang_once", kwargs={"marker": str(marker)}))  # no retries
    queued_behind = backend.enqueue(job("hang_once", kwargs={"marker": str(marker)}))
    worker = WorkerProcess(url, "doomed", tmp_path / "doomed.log", burst=False)
    try:
        wait_for_file(marker)
        backend.cancel(queued_behind.id)
        worker.kill9()
    finally:
        worker.stop()

    deadline = time.monotonic() + 15
    while backend.fetch(hung.id).interruptions == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    again = backend.fetch(hung.id)

    assert (again.status, again.attempts, again.interruptions) == (JobStatus.QUEUED, 1, 1)
    assert again.error == (
        'Worker "doomed" stopped responding (no heartbeat for 2 s) while running attempt 1.'
    )
    assert backend.fetch(queued_behind.id).status is JobStatus.CANCELED


def test_a_database_from_before_interruptions_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(SCHEMA.replace("    interruptions INTEGER NOT NULL DEFAULT 0,\n", ""))
    connection.close()

    backend = EmbeddedBackend(f"sqlite:///{path}")
    try:
        queued = backend.enqueue(job("record", kwargs={"path": "x", "label": "y"}))
        assert backend.fetch(queued.id).interruptions == 0
    finally:
        backend.close()


def test_every_process_can_die_and_the_queue_goes_on(embedded, tmp_path: Path) -> None:
    backend, url = embedded
    marker = tmp_path / "marker"
    hung = backend.enqueue(job("hang_once", kwargs={"marker": str(marker)}, retries=1))
    doomed = WorkerProcess(url, "doomed", tmp_path / "doomed.log", burst=False)
    try:
        wait_for_file(marker)
        doomed.kill9()
    finally:
        doomed.stop()
    backend.close()

    reopened = EmbeddedBackend(url)
    rescuer = WorkerProcess(url, "rescuer", tmp_path / "rescuer.log", burst=False)
    try:
        ended = wait_for(reopened, hung.id, timeout_s=20)
    finally:
        rescuer.stop()
        reopened.close()
    assert (ended.status, ended.attempts, ended.result) == (JobStatus.FINISHED, 2, "done")


def test_statuses_answers_for_many_jobs_in_one_call(tmp_path: Path) -> None:
    from dicomflow.queue.backend import open_backend
    from dicomflow.queue.job import Job, JobStatus

    backend = open_backend(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        ids = [backend.enqueue(Job(function="os:getpid")).id for _ in range(1200)]
        backend.cancel(ids[0])
        statuses = backend.statuses([*ids, "unknown"])  # type: ignore[attr-defined]
        assert len(statuses) == 1200 and "unknown" not in statuses
        assert statuses[ids[0]] is JobStatus.CANCELED
        assert {statuses[i] for i in ids[1:]} == {JobStatus.QUEUED}
    finally:
        backend.close()


def test_jobs_that_ended_long_ago_are_purged_with_their_logs(tmp_path: Path) -> None:
    from dicomflow.queue.job import Job

    logs = tmp_path / "logs"
    logs.mkdir()
    backend = EmbeddedBackend(f"sqlite:///{tmp_path / 'q.db'}?result_ttl_s=100&log_dir={logs}")
    try:
        done, canceled, failed, needed = (
            backend.enqueue(Job(function="os:getpid")) for _ in range(4)
        )
        waiting = backend.enqueue(Job(function="os:getpid", depends_on=[needed.id]))
        backend.cancel(canceled.id)
        with backend._lock, backend._connection as connection:
            for job_id, status in ((done, "finished"), (failed, "failed"), (needed, "finished")):
                connection.execute(
                    "UPDATE jobs SET status = ?, ended_at = 1000 WHERE id = ?", (status, job_id.id)
                )
            connection.execute("UPDATE jobs SET ended_at = 1000 WHERE id = ?", (canceled.id,))
        (logs / f"{done.id}.1.log").write_text("the log")
        (logs / f"{failed.id}.1.log").write_text("the log")

        assert backend.purge(now=1050) == 0  # not expired yet
        assert backend.purge(now=1200) == 2  # done and canceled

        assert backend.fetch(done.id) is None and backend.fetch(canceled.id) is None
        assert backend.fetch(failed.id) is not None  # failed jobs stay
        assert backend.fetch(needed.id) is not None  # a waiting job depends on it
        assert backend.fetch(waiting.id) is not None
        assert sorted(p.name for p in logs.iterdir()) == [f"{failed.id}.1.log"]
    finally:
        backend.close()
