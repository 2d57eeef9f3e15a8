"""The round lifecycle: a patient whose inputs are all complete becomes a round, which is
submitted to the queue; when its job has ended the round is exported (succeeded) or kept
in ``failed/`` (failed), from where it can be retried.

A round whose job succeeded gets a ``DONE`` marker before it is exported, so that a
restart exports it (again) rather than processing it again. A round whose de-identified
outputs refuse an instance (or cannot de-identify it) is failed before anything of it is
exported, its inputs kept.
"""

import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from dicomflow import metrics
from dicomflow.dicom.keys import shorten
from dicomflow.engine.collector import Collector
from dicomflow.engine.counters import Count, NodeCounters
from dicomflow.engine.deidentified_export import DeidentifiedFolder, log_refusal
from dicomflow.engine.round_runner import RoundOutcome, RoundRunner
from dicomflow.engine.round_store import Round, RoundStore
from dicomflow.engine.spool import Spool
from dicomflow.errors import DeidError, DicomflowError
from dicomflow.queue.backend import PerThreadBackend

logger = logging.getLogger(__name__)

DONE_MARKER = "DONE"
ROUND_ID = re.compile(r"[0-9a-f]{32}")

Caller = tuple[str, str]


class RoundExport(Protocol):
    """The export stage as rounds use it (:class:`dicomflow.engine.export.Export`)."""

    def prepare(self, job: Round) -> dict[str, DeidentifiedFolder]:
        """De-identify what must be; raises DeidError before anything is exported."""
        ...

    def round(self, job: Round, staged: dict[str, DeidentifiedFolder] | None = None) -> None:
        """Export the round's results and finish it."""
        ...


class Rounds:
    """Makes rounds of complete patients, submits them, and records how they ended.

    ``runner`` is set while the node runs a pipeline (None: rounds wait on disk);
    ``take_caller`` tells the peer that completed a patient; ``export`` exports a
    round whose job succeeded.
    """

    def __init__(
        self,
        *,
        name: str,
        store: RoundStore,
        spool: Spool,
        collector: Collector,
        queue: PerThreadBackend,
        counters: NodeCounters,
        take_caller: Callable[[str], Caller | None],
        export: RoundExport,
    ) -> None:
        self.name = name
        self.store = store
        self.runner: RoundRunner | None = None
        self._spool = spool
        self._collector = collector
        self._queue = queue
        self._counters = counters
        self._take_caller = take_caller
        self._export = export
        self._lock = threading.Lock()

    @property
    def failed(self) -> Path:
        """The folder of the failed rounds."""
        return self.store.failed

    def check_patient(self, patient_key: str) -> bool:
        """The trigger's check: make a round of ``patient_key`` if its inputs are complete.
        True if the patient is to be checked again (instances an input refused remain,
        which may make a round of their own)."""
        with self._lock:
            self._spool.settle()  # raises while the spool cannot be written: nothing taken yet
            arrivals = self._collector.arrivals(patient_key)
            members = self._collector.take_if_complete(patient_key)
            if members is None:
                return False
            caller = self._take_caller(patient_key)
            job = self.store.create(self.name, patient_key, members, caller)
        last_arrival = arrivals[1] if arrivals else None
        metrics.observe_stage(metrics.INPUTS_COMPLETE, last_arrival, job.created)
        count = sum(len(paths) for paths in members.values())
        logger.info(
            "round %s: patient %s complete with %d instance(s)",
            job.round_id,
            patient_key[:12],
            count,
        )
        self.submit(job)
        return bool(self._collector.state(patient_key))

    def submit(self, job: Round) -> None:
        if self.runner is not None:
            self.runner.submit(job)
            self._counters.add(Count.ROUNDS_STARTED)

    def done(self, job: Round, outcome: RoundOutcome) -> None:
        """The runner's report: the round's job has ended."""
        if not outcome.ok:
            self._fail(job, outcome.error)
            return
        self.store.processed(job, outcome.ended_at)
        (job.directory / DONE_MARKER).touch()
        if self._export_round(job, count=True):
            logger.info("round %s: processed in %.2fs", job.round_id, outcome.duration_s)

    def _export_round(self, job: Round, *, count: bool) -> bool:
        """Export a round whose job succeeded; fail it if its de-identified outputs refuse
        an instance. Return whether it was exported."""
        try:
            staged = self._export.prepare(job)
        except DeidError as error:
            log_refusal(f"round {job.round_id}", error)
            (job.directory / DONE_MARKER).unlink(missing_ok=True)  # a retry processes it again
            self._fail(job, f"Its results were not exported: {error}", shown="see above")
            return False
        if count:
            self._counters.add(Count.ROUNDS_SUCCEEDED)  # before export: a delivery implies it
        self._export.round(job, staged)
        return True

    def _fail(self, job: Round, error: str, shown: str | None = None) -> None:
        """Keep the round in ``failed/`` with ``error``; log ``shown`` (the error if None)."""
        target = self.store.fail(job, error)
        self._counters.add(Count.ROUNDS_FAILED)
        logger.error("round %s failed; inputs kept in %s: %s", job.round_id, target, shown or error)

    def resume(self) -> list[Round]:
        """Export or submit again the rounds a previous run left; return them."""
        pending = self.store.pending()
        for job in pending:
            if (job.directory / DONE_MARKER).exists():
                self._export_round(job, count=False)
            else:
                self.submit(job)
        return pending

    def retry(self, round_id: str, job_id: str) -> None:
        """Run a failed round again: its folder goes back from ``failed/`` to ``rounds/``,
        its job ``job_id`` is requeued and followed like a new one (results exported).

        Raises:
            DicomflowError: if the node runs no pipeline, the round is not a failed one,
                or the queue refuses to requeue the job.
        """
        runner = self.runner
        failed = self.store.failed / round_id
        if runner is None or not ROUND_ID.fullmatch(round_id) or not failed.is_dir():
            raise DicomflowError(
                f'Round "{shorten(round_id)}" is not a failed round of {self.name}.'
            )
        with self._lock:
            target = self.store.rounds / round_id
            os.replace(failed, target)
            job = self.store.load(target)
            try:
                self._queue.get().requeue(job_id)
            except Exception:
                os.replace(target, failed)  # still failed, with its error.json
                raise
            (target / "error.json").unlink(missing_ok=True)
        runner.submit(job)
        logger.info("round %s: retried as job %s", round_id, job_id)
