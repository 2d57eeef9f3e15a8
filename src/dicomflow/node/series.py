"""The series stage: instances grouped per series for the registry services.

Every received instance is linked into ``series/spool/incoming/{series_key}/``.
Once no instance has arrived for a series for ``series_quiet_period_s`` (the
series is *stable*), its instances move into a batch,
``series/rounds/{batch_id}/instances/``, and the consumer (the services'
scheduler) enqueues the jobs that want it, which read ``input_dir`` and write
``output_dir``. When a job finishes, the DICOM files of its output folder go
to the node's endpoints through the outbox; when every job of the batch has
ended, the batch is removed, or moved to ``series/failed/`` if one failed.
A batch the queue did not take (its server down) is scheduled again until it is
taken, and a batch one of whose jobs the queue no longer knows (a Redis server
restarted without persistence) is scheduled again as new jobs; a job's results
already sent are not sent a second time.
With ``protected`` directories (the node's data directory, by default), the jobs may
write nothing beneath them but their own output.
"""

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from dicomflow import metrics
from dicomflow.dicom.keys import value_key
from dicomflow.engine.resubmit import Resubmitter, retryable
from dicomflow.engine.round_store import Round, RoundStore
from dicomflow.engine.trigger import Trigger
from dicomflow.engine.watcher import JobWatcher
from dicomflow.node.spool import Encoded, Spool, write_durably
from dicomflow.queue.job import Job, JobStatus

logger = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"
SERIES_ROUND = "services"
Exporter = Callable[[str, Path, float | None], None]  # name, folder, when the job ended


class Scheduled(Protocol):
    job_ids: dict[str, str]
    errors: dict[str, str]


class SeriesConsumer(Protocol):
    """Schedules work for a stable series (see ``dicomflow.services.consumer``)."""

    def schedule(
        self,
        instances_dir: Path,
        output_root: Path,
        series_key: str,
        *,
        protected: Sequence[Path] = (),
    ) -> Scheduled:
        """Enqueue the series' jobs; beneath ``protected`` they may write only their own
        output."""
        ...


class SeriesStage:
    """Collects series, detects stable ones and follows their jobs to the end."""

    def __init__(
        self,
        root: Path,
        consumer: SeriesConsumer,
        watcher: JobWatcher,
        export: Exporter,
        *,
        quiet_period_s: float,
        fsync: bool = True,
        protected: tuple[Path, ...] = (),
    ) -> None:
        self.protected = protected
        self.spool = Spool(root / "spool", fsync=fsync)
        self.batches = RoundStore(root, self.spool)
        self.consumer = consumer
        self.watcher = watcher
        self.export = export
        self.trigger = Trigger(self._stable, quiet_period_s)
        self._members: dict[str, dict[str, Path]] = {}
        self._last_arrival: dict[str, float] = {}
        self._lock = threading.Lock()
        self._jobs_lock = threading.Lock()  # jobs.json: the watcher's and resubmitter's threads
        self._resubmitter: Resubmitter[Round] = Resubmitter(self._schedule)

    def start(self) -> None:
        """Resume: series still collecting, and batches whose jobs had not all ended."""
        self.batches.recover_partial()
        for series_key, path in self.spool.instances():
            self._members.setdefault(series_key, {})[path.stem] = path
            self.trigger.arrived(0, series_key)
        for batch in self.batches.pending():
            if (batch.directory / JOBS_FILE).exists():
                self._follow(batch, _read_jobs(batch))
            else:  # the queue never took its jobs
                self._schedule(batch)
        self.trigger.start()

    def stop(self) -> None:
        self.trigger.stop()
        self._resubmitter.stop()

    def store(self, series_instance_uid: object, sop_instance_uid: str, data: Encoded) -> Path:
        """Store an instance (Part-10 bytes) durably in its series; return its path."""
        series_key = value_key(series_instance_uid)
        path = self.spool.store(series_key, sop_instance_uid, data)
        self.added(series_key, sop_instance_uid, path)
        return path

    def added(self, series_key: str, sop_instance_uid: str, path: Path) -> None:
        """Count in an instance stored (or linked) at ``path`` of this stage's spool."""
        with self._lock:
            self._members.setdefault(series_key, {})[sop_instance_uid] = path
            self._last_arrival[series_key] = time.time()
        self.trigger.arrived(0, series_key)

    def _stable(self, series_key: str) -> None:
        self.spool.settle()  # raises while the spool cannot be written: nothing taken yet
        with self._lock:
            members = self._members.pop(series_key, None)
            last_arrival = self._last_arrival.pop(series_key, None)
        if not members:
            return
        batch = self.batches.create(SERIES_ROUND, series_key, {"series": members})
        stable = metrics.INPUTS_COMPLETE
        metrics.observe_stage(stable, last_arrival, batch.created, kind=metrics.KIND_SERVICE)
        batch.output_dir.mkdir(exist_ok=True)
        self._schedule(batch)

    def _schedule(self, batch: Round) -> None:
        """Enqueue the batch's jobs and follow them; while the queue does not answer, try
        again later."""
        self._clear_unsent(batch)
        try:
            scheduled = self.consumer.schedule(
                batch.instances_dir, batch.output_dir, batch.patient_key, protected=self.protected
            )
        except Exception as exc:
            if retryable(exc):
                self._later(batch, exc)
                return
            logger.exception("series batch %s: its jobs were not scheduled", batch.round_id[:12])
            self._scheduled(batch, {}, {"schedule": f"Not scheduled: {exc}"})
            return
        self._resubmitter.done(batch.round_id)
        self._scheduled(batch, scheduled.job_ids, scheduled.errors)

    def _clear_unsent(self, batch: Round) -> None:
        """Before a batch is scheduled again: empty the output folders of its earlier
        jobs whose results were not sent (a job that ran, but whose end the queue lost,
        runs again into an empty folder)."""
        with self._jobs_lock:
            jobs = _read_jobs(batch)
        for job_name in set(jobs["job_ids"]) - set(jobs.get("sent", [])):
            shutil.rmtree(batch.output_dir / job_name, ignore_errors=True)

    def _later(self, batch: Round, exc: Exception) -> None:
        wait_s = self._resubmitter.later(batch.round_id, batch)
        logger.warning(
            "series batch %s: the queue did not take its jobs (%r); trying again in %g s",
            batch.round_id[:12],
            exc,
            wait_s,
        )

    def _scheduled(self, batch: Round, job_ids: dict[str, str], errors: dict[str, str]) -> None:
        """Record the batch's (new) jobs, keeping which results were sent, and follow them."""
        with self._jobs_lock:
            sent = _read_jobs(batch).get("sent", [])
            jobs = {"job_ids": job_ids, "errors": errors, "ended": {}, "sent": sent}
            _write_jobs(batch, jobs)
        for job_name, error in errors.items():
            logger.error(
                "series %s: job %s not scheduled: %s", batch.patient_key[:12], job_name, error
            )
        self._follow(batch, jobs)

    def _follow(self, batch: Round, jobs: dict[str, Any]) -> None:
        waiting = {n: i for n, i in jobs["job_ids"].items() if n not in jobs["ended"]}
        if not waiting:
            self._close(batch, jobs)
            return
        for job_name, job_id in waiting.items():
            ended = partial(self._job_ended, batch, job_name)
            self.watcher.watch(job_id, ended, partial(self._vanished, batch))

    def _vanished(self, batch: Round, job_id: str) -> None:
        with self._jobs_lock:
            current = _read_jobs(batch)["job_ids"].values() if batch.directory.is_dir() else ()
        if job_id not in current:  # the batch was scheduled again already, or has ended
            return
        logger.warning(
            "series batch %s: its job %s is no longer in the queue (a queue server restarted"
            " without its data?); scheduling its jobs again",
            batch.round_id[:12],
            job_id,
        )
        self._schedule(batch)

    def _job_ended(self, batch: Round, job_name: str, job: Job) -> None:
        with self._jobs_lock:
            if batch.directory.is_dir() and _read_jobs(batch)["job_ids"].get(job_name) == job.id:
                self._record_end(batch, job_name, job)

    def _record_end(self, batch: Round, job_name: str, job: Job) -> None:
        if job.started_at is not None:  # (a job canceled before it started has no stages)
            service = metrics.KIND_SERVICE
            began, finished = job.started_at, job.ended_at
            metrics.observe_stage(metrics.JOB_STARTED, batch.created, began, kind=service)
            metrics.observe_stage(metrics.JOB_FINISHED, began, finished, kind=service)
        output = batch.output_dir / job_name
        ended = {"status": job.status.value, "error": job.error}
        if job.status is JobStatus.FINISHED:
            ended = self._collect(job, job_name, output) or ended
        jobs = _read_jobs(batch)
        jobs["ended"][job_name] = ended
        finished = ended["status"] == JobStatus.FINISHED
        if finished and job_name not in jobs.get("sent", []) and any(output.glob("*.dcm")):
            jobs["sent"] = [*jobs.get("sent", []), job_name]  # not again if run again
            _write_jobs(batch, jobs)
            self.export(f"{batch.round_id}-{job_name}", output, job.ended_at)
        else:
            _write_jobs(batch, jobs)
        logger.info("series batch %s: job %s %s", batch.round_id[:12], job_name, job.status.value)
        if set(jobs["ended"]) >= set(jobs["job_ids"]):
            self._close(batch, jobs)

    def _collect(self, job: Job, job_name: str, output: Path) -> dict[str, Any] | None:
        """Fetch a job's results left in the archive (consumers that have a
        ``collect_output``); on failure, return the job's ending as failed."""
        collect = getattr(self.consumer, "collect_output", None)
        if collect is None:
            return None
        try:
            collect(job, job_name, output)
        except Exception as exc:  # the job's results are lost for the node: the job failed
            logger.exception("job %s: results could not be fetched", job.id)
            return {"status": JobStatus.FAILED.value, "error": f"Results not fetched: {exc}"}
        return None

    def _close(self, batch: Round, jobs: dict[str, Any]) -> None:
        failed = {n: e for n, e in jobs["ended"].items() if e["status"] != JobStatus.FINISHED}
        if not failed and not jobs["errors"]:
            self.batches.finish(batch)
            return
        reasons = {
            **jobs["errors"],
            **{n: f"{e['status']}: {e['error']}" for n, e in failed.items()},
        }
        self.batches.fail(batch, json.dumps(reasons, indent=2))
        logger.error("series batch %s failed; instances kept: %s", batch.round_id, reasons)


def _read_jobs(batch: Round) -> dict[str, Any]:
    path = batch.directory / JOBS_FILE
    if not path.exists():
        return {"job_ids": {}, "errors": {}, "ended": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write_jobs(batch: Round, jobs: dict[str, Any]) -> None:
    partial = batch.directory / f"{JOBS_FILE}.part"
    write_durably(partial, json.dumps(jobs, indent=2).encode())
    os.replace(partial, batch.directory / JOBS_FILE)
