"""The archive outbox: a pipeline's archive outputs waiting for their archive job.

Each output is moved to ``archive-outbox/{name}`` with a marker beside it,
``.{name}.json``, recording its datastore and (once enqueued) its job. The folder is
removed once its job has finished; a job that failed for good leaves it there (it can
be retried from the dashboard). An output the queue did not take (its server down) is
submitted again until it is taken, and one whose job the queue no longer knows (a
crash before enqueueing, a Redis server restarted without persistence) is scheduled
again as a new job, while the node runs and at its next start.
"""

import json
import logging
import os
import shutil
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from dicomflow.durable import fsync_directory, write_durably
from dicomflow.engine.archive_deid import ArchiveDeid
from dicomflow.engine.resubmit import Resubmitter
from dicomflow.engine.series_archive import ARCHIVE_JOB, ArchiveScheduler
from dicomflow.engine.watcher import JobWatcher
from dicomflow.queue.backend import PerThreadBackend
from dicomflow.queue.job import Job, JobStatus

logger = logging.getLogger(__name__)

Staged = tuple[Path, str]  # an output's folder in the archive outbox, its datastore


class ArchiveOutbox:
    """Archive outputs in ``folder``, archived by jobs on the queue the watcher reads
    (de-identified with ``deid``: the node's ``archive_deid``)."""

    def __init__(
        self,
        folder: Path,
        watcher: JobWatcher,
        protected: Sequence[Path],
        deid: ArchiveDeid | None = None,
    ) -> None:
        self.folder = folder
        self.watcher = watcher
        self.protected = tuple(protected)
        self.deid = deid
        self._queue = PerThreadBackend(watcher.url)
        self._schedulers: dict[str, ArchiveScheduler] = {}
        self._resubmitter: Resubmitter[Staged] = Resubmitter(self.submit)

    def add(self, name: str, folder: Path, datastore: str) -> None:
        """Move ``folder`` to ``archive-outbox/{name}`` and enqueue the job that archives
        it (with retries) and then empties it."""
        staged = self.folder / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        if not staged.exists():
            _write_marker(staged, {"datastore": datastore})  # before the move: see recover
            os.replace(folder, staged)
            fsync_directory(staged.parent)
        self.submit((staged, datastore))

    def recover(self) -> None:
        """Follow again the outputs a previous run left, and enqueue again those whose job
        was lost (a crash between moving the folder and enqueueing, or a queue reset)."""
        if not self.folder.is_dir():
            return
        for marker in self.folder.glob(".*.json"):
            staged = self.folder / marker.name[1:-5]
            if not staged.is_dir() or not any(staged.iterdir()):
                # Archived and emptied by its job, or never moved (its round, still
                # pending, exports it again).
                _remove_archived(staged)
                continue
            self.submit((staged, json.loads(marker.read_text())["datastore"]))

    def stop(self) -> None:
        """Stop submitting again (the outputs stay, submitted again at the next start)."""
        self._resubmitter.stop()

    def submit(self, output: Staged) -> None:
        """Follow the output's job if the queue knows it, or enqueue a new one; while the
        queue does not answer, try again later."""
        staged, datastore = output
        try:
            job_id = self._known_job(staged) or self._enqueue(staged, datastore)
        except Exception as exc:  # the queue's (or the datastore's) server did not answer
            wait_s = self._resubmitter.later(staged.name, output)
            logger.warning(
                "archive output %s: the queue did not take its job (%r); trying again in %g s",
                staged.name,
                exc,
                wait_s,
            )
            return
        self._resubmitter.done(staged.name)
        self.watcher.watch(
            job_id, partial(_archive_output_ended, staged), partial(self._vanished, output)
        )

    def _known_job(self, staged: Path) -> str | None:
        marker = staged.parent / f".{staged.name}.json"
        job_id = json.loads(marker.read_text()).get(ARCHIVE_JOB) if marker.exists() else None
        if job_id is None or self._queue.get().fetch(job_id) is None:
            return None
        return str(job_id)

    def _enqueue(self, staged: Path, datastore: str) -> str:
        scheduler = self._schedulers.get(datastore)
        if scheduler is None:  # one per datastore: it holds the queue connections
            scheduler = ArchiveScheduler(datastore, self.watcher.url, deid=self.deid)
            self._schedulers[datastore] = scheduler
        scheduled = scheduler.schedule(
            staged, staged, f"output {staged.name}", remove_input=True, protected=self.protected
        )
        _write_marker(staged, {"datastore": datastore, **scheduled.job_ids})
        job_id = scheduled.job_ids[ARCHIVE_JOB]
        logger.info("archive output %s: job %s", staged.name, job_id)
        return job_id

    def _vanished(self, output: Staged, job_id: str) -> None:
        logger.warning(
            "archive output %s: its job %s is no longer in the queue (a queue server restarted"
            " without its data?); scheduling it again",
            output[0].name,
            job_id,
        )
        self.submit(output)


def _archive_output_ended(staged: Path, ended: Job) -> None:
    if ended.status is JobStatus.FINISHED:
        _remove_archived(staged)
    else:
        logger.error(
            "archive output %s: job %s %s; kept in %s (retry the job from the dashboard): %s",
            staged.name,
            ended.id,
            ended.status.value,
            staged,
            ended.error,
        )


def _remove_archived(staged: Path) -> None:
    """Remove an archive output's folder, emptied by its job, and its marker."""
    shutil.rmtree(staged, ignore_errors=True)
    (staged.parent / f".{staged.name}.json").unlink(missing_ok=True)


def _write_marker(staged: Path, values: dict[str, Any]) -> None:
    """Record, beside an archive output's folder, its datastore and (once known) its job."""
    write_durably(staged.parent / f".{staged.name}.json", json.dumps(values).encode())
