"""A job a worker popped from its RQ queue and died with before marking it started is
"queued" in name only (in no queue list, in no registry): the node's job watcher puts it
back in its queue after a grace period, and it runs."""

import threading
from pathlib import Path

from queue_support import TEST_OPTIONS, WorkerProcess, job

from dicomflow.engine.watcher import JobWatcher
from dicomflow.queue import Job, JobStatus, Priority
from dicomflow.queue.rq.backend import RQBackend
from support import wait_for


def test_a_job_its_worker_popped_and_died_with_is_queued_again_and_runs(
    redis: str, tmp_path: Path
) -> None:
    url = f"{redis}?{TEST_OPTIONS}"
    backend = RQBackend(url)
    out = tmp_path / "ran.txt"
    lost = backend.enqueue(job("record", kwargs={"path": str(out), "label": "lost"}))
    waiting = backend.enqueue(job("record", kwargs={"path": str(out), "label": "listed"}))
    # A worker popped it (LPOP) and was killed before it marked the job started.
    backend.connection.lrem(backend.queues[Priority.DEFAULT].key, 0, lost.id)
    assert backend.lost([lost.id, waiting.id]) == [lost.id]

    ended: list[Job] = []
    all_ended = threading.Event()

    def end(finished: Job) -> None:
        ended.append(finished)
        if len(ended) == 2:
            all_ended.set()

    watcher = JobWatcher(url, lost_after_s=1.0)
    worker = WorkerProcess(url, "survivor", tmp_path / "worker.log", burst=False)
    try:
        watcher.start()
        watcher.watch(lost.id, end)
        watcher.watch(waiting.id, end)
        wait_for(all_ended.is_set, 30, "both jobs to end")
    finally:
        watcher.stop()
        worker.stop()
        backend.close()
    assert {finished.status for finished in ended} == {JobStatus.FINISHED}
    assert sorted(out.read_text().splitlines()) == ["listed", "lost"]  # each ran once
