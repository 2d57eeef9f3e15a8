"""What only the embedded (SQLite) backend promises: any backend call settles abandoned jobs."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_support import TEST_OPTIONS, WorkerProcess, job, wait_for, wait_for_file

from dicomflow.queue import JobStatus
from dicomflow.queue.embedded import EmbeddedBackend


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[EmbeddedBackend, str]]:
    url = f"sqlite:///{tmp_path}/jobs.db?{TEST_OPTIONS}"
    backend = EmbeddedBackend(url)
    yield backend, url
    backend.close()


def test_a_fetch_settles_the_job_of_a_killed_worker(embedded, tmp_path: Path) -> None:
    backend, url = embedded
    marker = tmp_path / "marker"
    hung = backend.enqueue(job("hang_once", kwargs={"marker": str(marker)}))
    queued_behind = backend.enqueue(job("hang_once", kwargs={"marker": str(marker)}))
    worker = WorkerProcess(url, "doomed", tmp_path / "doomed.log", burst=False)
    try:
        wait_for_file(marker)
        backend.cancel(queued_behind.id)
        worker.kill9()
    finally:
        worker.stop()

    ended = wait_for(backend, hung.id, timeout_s=15)

    assert ended.status is JobStatus.FAILED
    assert ended.error == (
        'Worker "doomed" stopped responding while running attempt 1 (no heartbeat for 2 s).'
    )
    assert backend.fetch(queued_behind.id).status is JobStatus.CANCELED


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
