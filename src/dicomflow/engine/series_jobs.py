"""The series stage: instances grouped per series for the registry services.

Every received instance is linked into ``series/spool/incoming/{series_key}/``.
Once no instance has arrived for a series for ``series_quiet_period_s`` (the
series is *stable*), its instances move into a round,
``series/rounds/{round_id}/instances/``, and the consumer (the services'
scheduler) enqueues the series jobs that want it, which read ``input_dir`` and
write ``output_dir``. The round's ``jobs.json`` (:class:`SeriesJobs`) records
them. When a job finishes, the DICOM files of its output folder go to the node's
endpoints through the outbox (de-identified first for a job whose meta says
``deidentify``; a refused instance fails the job, nothing of it sent); when every job of
the round has ended, the round is removed, or moved to ``series/failed/`` if one failed.
A round the queue did not take (its server down) is scheduled again until it is
taken, and a round one of whose jobs the queue no longer knows (a Redis server
restarted without persistence) is scheduled again as new jobs; a job's results
already sent are not sent a second time.
With ``protected`` directories (the node's data directory, by default), the jobs may
write nothing beneath them but their own output.
"""

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydicom import Dataset

from dicomflow import metrics
from dicomflow.dicom.keys import value_key
from dicomflow.durable import Encoded, write_then_rename
from dicomflow.engine.deidentified_export import log_refusal, shown_reason
from dicomflow.engine.resubmit import Resubmitter, retryable
from dicomflow.engine.round_store import Round, RoundStore
from dicomflow.engine.spool import Journaling, Spool
from dicomflow.engine.trigger import Trigger
from dicomflow.engine.watcher import JobWatcher
from dicomflow.errors import DeidError
from dicomflow.queue.job import Job, JobStatus

logger = logging.getLogger(__name__)

JOBS_FILE = "jobs.json"
SERIES_ROUND = "services"
SERIES_SPOOL = "series"  # the series spool's name in the journal's records
# name, folder, when the job ended, whether the job's results are sent de-identified
Exporter = Callable[[str, Path, float | None, bool], None]


class ScheduledSeriesJobs(Protocol):
    """What a consumer scheduled for one series: the queue's job ids by job name, and
    why the jobs it could not schedule were not (by job name)."""

    job_ids: dict[str, str]
    errors: dict[str, str]


class SeriesConsumer(Protocol):
    """Schedules series jobs for a stable series (see ``dicomflow.services.consumer``)."""

    def schedule(
        self,
        instances_dir: Path,
        output_root: Path,
        series_key: str,
        *,
        protected: Sequence[Path] = (),
    ) -> ScheduledSeriesJobs:
        """Enqueue the jobs for the series in ``instances_dir``; each writes into its
        folder of ``output_root``; beneath ``protected`` they may write only their own
        output."""
        ...


@runtime_checkable
class CollectingConsumer(SeriesConsumer, Protocol):
    """A consumer whose jobs may leave their results elsewhere (the archive's datastore)."""

    def collect_output(self, job: Job, job_name: str, output_dir: Path) -> object:
        """Fetch the results of the finished ``job`` (named ``job_name`` in its round)
        into ``output_dir``; raises if they cannot be fetched."""
        ...


@runtime_checkable
class RefusingConsumer(SeriesConsumer, Protocol):
    """A consumer that may refuse a received instance before it is stored."""

    def refusal(self, dataset: Dataset) -> str | None:
        """Why ``dataset`` cannot be taken (None if it can)."""
        ...


@dataclass
class JobEnd:
    """How a series job ended: the queue's status, or failed if its results were lost."""

    status: JobStatus
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "JobEnd":
        error = data.get("error")
        return cls(JobStatus(data["status"]), None if error is None else str(error))


@dataclass
class SeriesJobs:
    """A series round's ``jobs.json``: its series jobs (the queue's ids by job name), why
    the ones not scheduled were not, how each ended, and which jobs' results were sent."""

    job_ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    ended: dict[str, JobEnd] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_ids": dict(self.job_ids),
            "errors": dict(self.errors),
            "ended": {name: end.to_json() for name, end in self.ended.items()},
            "sent": list(self.sent),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SeriesJobs":
        return cls(
            job_ids={str(name): str(job_id) for name, job_id in data["job_ids"].items()},
            errors={str(name): str(error) for name, error in data["errors"].items()},
            ended={str(name): JobEnd.from_json(end) for name, end in data["ended"].items()},
            sent=[str(name) for name in data.get("sent", [])],
        )

    @property
    def waiting(self) -> dict[str, str]:
        """The jobs not ended yet (ids by job name)."""
        return {name: job_id for name, job_id in self.job_ids.items() if name not in self.ended}

    @property
    def all_ended(self) -> bool:
        return set(self.ended) >= set(self.job_ids)


class SeriesStage:
    """Collects series, detects stable ones and follows their series jobs to the end.

    With ``journal``, the series spool is written behind it (see
    :mod:`dicomflow.engine.journal`), named ``series`` in its records."""

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
        journal: Journaling | None = None,
    ) -> None:
        self.protected = protected
        self.spool = Spool(root / "spool", fsync=fsync, journal=journal, journal_name=SERIES_SPOOL)
        self.rounds = RoundStore(root, self.spool)
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
        """Resume: series still collecting, and rounds whose jobs had not all ended."""
        self.rounds.recover_partial()
        for series_key, path in self.spool.instances():
            self._members.setdefault(series_key, {})[path.stem] = path
            self.trigger.arrived(0, series_key)
        for series_round in self.rounds.pending():
            if (series_round.directory / JOBS_FILE).exists():
                self._follow(series_round, read_jobs(series_round.directory))
            else:  # the queue never took its jobs
                self._schedule(series_round)
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
        series_round = self.rounds.create(SERIES_ROUND, series_key, {"series": members})
        stable = metrics.INPUTS_COMPLETE
        created = series_round.created
        metrics.observe_stage(stable, last_arrival, created, kind=metrics.KIND_SERVICE)
        series_round.output_dir.mkdir(exist_ok=True)
        self._schedule(series_round)

    def _schedule(self, series_round: Round) -> None:
        """Enqueue the round's series jobs and follow them; while the queue does not
        answer, try again later."""
        self._clear_unsent(series_round)
        try:
            scheduled = self.consumer.schedule(
                series_round.instances_dir,
                series_round.output_dir,
                series_round.patient_key,
                protected=self.protected,
            )
        except Exception as exc:
            if retryable(exc):
                self._later(series_round, exc)
                return
            logger.exception(
                "series round %s: its jobs were not scheduled", series_round.round_id[:12]
            )
            self._scheduled(series_round, {}, {"schedule": f"Not scheduled: {exc}"})
            return
        self._resubmitter.done(series_round.round_id)
        self._scheduled(series_round, scheduled.job_ids, scheduled.errors)

    def _clear_unsent(self, series_round: Round) -> None:
        """Before a round is scheduled again: empty the output folders of its earlier
        jobs whose results were not sent (a job that ran, but whose end the queue lost,
        runs again into an empty folder)."""
        with self._jobs_lock:
            jobs = read_jobs(series_round.directory)
        for job_name in set(jobs.job_ids) - set(jobs.sent):
            shutil.rmtree(series_round.output_dir / job_name, ignore_errors=True)

    def _later(self, series_round: Round, exc: Exception) -> None:
        wait_s = self._resubmitter.later(series_round.round_id, series_round)
        logger.warning(
            "series round %s: the queue did not take its jobs (%r); trying again in %g s",
            series_round.round_id[:12],
            exc,
            wait_s,
        )

    def _scheduled(
        self, series_round: Round, job_ids: dict[str, str], errors: dict[str, str]
    ) -> None:
        """Record the round's (new) jobs, keeping which results were sent, and follow them."""
        with self._jobs_lock:
            sent = read_jobs(series_round.directory).sent
            jobs = SeriesJobs(job_ids=dict(job_ids), errors=dict(errors), sent=sent)
            write_jobs(series_round.directory, jobs)
        for job_name, error in errors.items():
            logger.error(
                "series %s: job %s not scheduled: %s",
                series_round.patient_key[:12],
                job_name,
                error,
            )
        self._follow(series_round, jobs)

    def _follow(self, series_round: Round, jobs: SeriesJobs) -> None:
        waiting = jobs.waiting
        if not waiting:
            self._close(series_round, jobs)
            return
        for job_name, job_id in waiting.items():
            ended = partial(self._job_ended, series_round, job_name)
            self.watcher.watch(job_id, ended, partial(self._vanished, series_round))

    def _vanished(self, series_round: Round, job_id: str) -> None:
        with self._jobs_lock:
            there = series_round.directory.is_dir()
            current = read_jobs(series_round.directory).job_ids.values() if there else ()
        if job_id not in current:  # the round was scheduled again already, or has ended
            return
        logger.warning(
            "series round %s: its job %s is no longer in the queue (a queue server restarted"
            " without its data?); scheduling its jobs again",
            series_round.round_id[:12],
            job_id,
        )
        self._schedule(series_round)

    def _job_ended(self, series_round: Round, job_name: str, job: Job) -> None:
        with self._jobs_lock:
            directory = series_round.directory
            if directory.is_dir() and read_jobs(directory).job_ids.get(job_name) == job.id:
                self._record_end(series_round, job_name, job)

    def _record_end(self, series_round: Round, job_name: str, job: Job) -> None:
        if job.started_at is not None:  # (a job canceled before it started has no stages)
            service = metrics.KIND_SERVICE
            began, finished = job.started_at, job.ended_at
            metrics.observe_stage(metrics.JOB_STARTED, series_round.created, began, kind=service)
            metrics.observe_stage(metrics.JOB_FINISHED, began, finished, kind=service)
        output = series_round.output_dir / job_name
        ended = JobEnd(job.status, job.error)
        if job.status is JobStatus.FINISHED:
            ended = self._collect(job, job_name, output) or ended
        jobs = read_jobs(series_round.directory)
        jobs.ended[job_name] = ended
        finished = ended.status == JobStatus.FINISHED
        if finished and job_name not in jobs.sent and any(output.glob("*.dcm")):
            jobs.sent.append(job_name)  # not again if run again
            write_jobs(series_round.directory, jobs)
            self._export(series_round, job_name, job, jobs)
        else:
            write_jobs(series_round.directory, jobs)
        logger.info(
            "series round %s: job %s %s", series_round.round_id[:12], job_name, job.status.value
        )
        if jobs.all_ended:
            self._close(series_round, jobs)

    def _export(self, series_round: Round, job_name: str, job: Job, jobs: SeriesJobs) -> None:
        """Send the job's results; a de-identified export that refuses an instance fails
        the job (nothing of it sent; the round keeps its instances)."""
        name = f"{series_round.round_id}-{job_name}"
        output = series_round.output_dir / job_name
        try:
            self.export(name, output, job.ended_at, bool(job.meta.get("deidentify")))
        except DeidError as error:
            log_refusal(f"series round {series_round.round_id[:12]}: job {job_name}", error)
            jobs.sent.remove(job_name)
            reason = f"Results not exported: {shown_reason(error)}"  # logged when the round ends
            jobs.ended[job_name] = JobEnd(JobStatus.FAILED, reason)
            write_jobs(series_round.directory, jobs)

    def _collect(self, job: Job, job_name: str, output: Path) -> JobEnd | None:
        """Fetch a job's results left in the archive (consumers that have a
        ``collect_output``); on failure, return the job's ending as failed."""
        if not isinstance(self.consumer, CollectingConsumer):
            return None
        try:
            self.consumer.collect_output(job, job_name, output)
        except Exception as exc:  # the job's results are lost for the node: the job failed
            logger.exception("job %s: results could not be fetched", job.id)
            return JobEnd(JobStatus.FAILED, f"Results not fetched: {exc}")
        return None

    def _close(self, series_round: Round, jobs: SeriesJobs) -> None:
        failed = {n: e for n, e in jobs.ended.items() if e.status != JobStatus.FINISHED}
        if not failed and not jobs.errors:
            self.rounds.finish(series_round)
            return
        reasons = {
            **jobs.errors,
            **{n: f"{e.status.value}: {e.error}" for n, e in failed.items()},
        }
        self.rounds.fail(series_round, json.dumps(reasons, indent=2))
        logger.error("series round %s failed; instances kept: %s", series_round.round_id, reasons)


def read_jobs(directory: Path) -> SeriesJobs:
    """The ``jobs.json`` of the series round in ``directory`` (empty if there is none)."""
    path = directory / JOBS_FILE
    if not path.exists():
        return SeriesJobs()
    return SeriesJobs.from_json(json.loads(path.read_text()))


def write_jobs(directory: Path, jobs: SeriesJobs) -> None:
    """Replace the ``jobs.json`` of the series round in ``directory``."""
    data = json.dumps(jobs.to_json(), indent=2).encode()
    write_then_rename(directory / JOBS_FILE, data, sync_directory=False)
