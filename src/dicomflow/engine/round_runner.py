"""Runs rounds as jobs on the queue and reports how each ended.

A round becomes one job (:data:`~dicomflow.engine.round_job.PROCESS_ROUND`) whose
arguments carry the round by reference (its folder). The job's id is kept in
the round folder, so after a restart the node follows the same job instead of
starting a second one. A round the queue did not take (its server down) is
submitted again until it is taken; a round whose job the queue no longer knows
(a Redis server restarted without persistence) is submitted again as a new job.
When the job ends, its captured output is copied into the node's log (the whole
of it when the queue keeps full logs, its tail otherwise) and the node is told
the outcome.
"""

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dicomflow import metrics
from dicomflow.address import Address
from dicomflow.destinations import OUTPUT_MANIFEST
from dicomflow.durable import write_durably
from dicomflow.engine.pipeline_ref import PipelineRef
from dicomflow.engine.resubmit import Resubmitter
from dicomflow.engine.round_job import PROCESS_ROUND, WorkerTask
from dicomflow.engine.round_store import Round
from dicomflow.engine.watcher import JobWatcher
from dicomflow.queue.backend import Backend, PerThreadBackend
from dicomflow.queue.job import Job, JobKind, JobStatus
from dicomflow.tls import TLSFiles

logger = logging.getLogger(__name__)
process_logger = logging.getLogger("dicomflow.process")

JOB_FILE = "job.json"
MAX_LOG_LINE = 16_384


@dataclass
class RoundOutcome:
    """How one round's processing ended."""

    ok: bool
    error: str = ""
    duration_s: float = 0.0
    ended_at: float | None = None


class RoundRunner:
    """Submits rounds to the queue at ``url`` and calls ``on_done`` when each has ended."""

    def __init__(
        self,
        pipeline: PipelineRef,
        *,
        url: str,
        watcher: JobWatcher,
        endpoints: list[Address],
        ae_title: str,
        timeout_s: float,
        log_dir: Path | None,
        on_done: Callable[[Round, RoundOutcome], None],
        protected: tuple[Path, ...] = (),
        client_tls: TLSFiles | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.client_tls = client_tls
        self.url = url
        self.watcher = watcher
        self.endpoints = tuple(endpoints)
        self.ae_title = ae_title
        self.timeout_s = timeout_s
        self.log_dir = log_dir
        self.protected = tuple(str(path) for path in protected)
        self._on_done = on_done
        self._backend = PerThreadBackend(url)
        self._resubmitter: Resubmitter[Round] = Resubmitter(self.submit)

    def submit(self, job: Round) -> None:
        """Enqueue the round (or, after a restart, follow the job already enqueued); while
        the queue does not answer, try again later."""
        try:
            job_id = _known_job(job, self._backend.get()) or self._enqueue(job)
        except Exception as exc:  # the queue's server is down or unreachable
            wait_s = self._resubmitter.later(job.round_id, job)
            logger.warning(
                "round %s: the queue did not take it (%r); trying again in %g s",
                job.round_id,
                exc,
                wait_s,
            )
            return
        self._resubmitter.done(job.round_id)
        self.watcher.watch(job_id, partial(self._ended, job), partial(self._vanished, job))

    def close(self) -> None:
        """Stop trying again the rounds the queue did not take (they stay in ``rounds/``,
        submitted again at the next start)."""
        self._resubmitter.stop()

    def _vanished(self, job: Round, job_id: str) -> None:
        logger.warning(
            "round %s: its job %s is no longer in the queue (a queue server restarted"
            " without its data?); submitting it again",
            job.round_id,
            job_id,
        )
        self.submit(job)

    def _enqueue(self, job: Round) -> str:
        task = WorkerTask(
            pipeline=self.pipeline,
            round_id=job.round_id,
            patient_key=job.patient_key,
            inputs={k: [(u, str(p)) for u, p in v] for k, v in job.input_paths().items()},
            directory=str(job.directory),
            endpoints=self.endpoints,
            ae_title=self.ae_title,
            protected=self.protected,
            caller=(job.caller[0], job.caller[1]) if job.caller else None,
            client_tls=self.client_tls,
        )
        queued = self._backend.get().enqueue(
            Job(
                function=PROCESS_ROUND,
                kwargs=task.to_kwargs(),
                name=self.pipeline.qualname,
                timeout_s=self.timeout_s,
                meta={"kind": JobKind.PIPELINE, "round_id": job.round_id},
            )
        )
        write_durably(job.directory / JOB_FILE, json.dumps({"job_id": queued.id}).encode())
        return queued.id

    def _ended(self, job: Round, ended: Job) -> None:
        self.relay_log(job, ended)
        duration = (ended.ended_at or 0.0) - (ended.started_at or ended.ended_at or 0.0)
        if ended.started_at is not None:  # not when canceled before a worker took it
            metrics.observe_stage(metrics.JOB_STARTED, job.created, ended.started_at)
            metrics.observe_stage(metrics.JOB_FINISHED, ended.started_at, ended.ended_at)
        outcome = RoundOutcome(*_diagnose(job, ended), duration_s=duration, ended_at=ended.ended_at)
        self._on_done(job, outcome)

    def relay_log(self, job: Round, ended: Job) -> None:
        """Copy the job's captured output, whatever its size, into the node's log and into
        the round's ``process.log`` (kept with a failed round)."""
        logs = sorted(self.log_dir.glob(f"{ended.id}.*.log")) if self.log_dir else []
        descriptor = os.open(job.log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(descriptor, "wb") as log:  # readable by the node's user alone
            if logs:
                with logs[-1].open("rb") as kept:
                    shutil.copyfileobj(kept, log)
            else:
                log.write((ended.log_tail or "").encode())
        with job.log_file.open("r", errors="replace") as stream:
            _relay(job.round_id, stream)
        for path in logs:  # the round keeps its copy; the queue's copies would pile up
            path.unlink(missing_ok=True)


def _relay(round_id: str, lines: Iterable[str]) -> None:
    for line in lines:
        text = line.rstrip("\n")
        for start in range(0, max(len(text), 1), MAX_LOG_LINE):
            process_logger.info("round %s | %s", round_id[:12], text[start : start + MAX_LOG_LINE])


def _known_job(job: Round, backend: Backend) -> str | None:
    path = job.directory / JOB_FILE
    if not path.exists():
        return None
    job_id = str(json.loads(path.read_text())["job_id"])
    return job_id if backend.fetch(job_id) is not None else None


def _diagnose(job: Round, ended: Job) -> tuple[bool, str]:
    if ended.status is not JobStatus.FINISHED:
        return False, ended.error or f"The job ended {ended.status.value}."
    if (job.output_dir / OUTPUT_MANIFEST).is_file():
        return True, ""
    return False, "The job finished but wrote no results manifest."
