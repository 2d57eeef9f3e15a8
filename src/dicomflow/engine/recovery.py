"""Recovery at start-up: the journal, the series, the archive outputs, the rounds, and
the instances a previous run left in the spool (offered to the collector again)."""

import logging
import threading
from pathlib import Path

from pydicom import dcmread

from dicomflow.dicom.header import header_of
from dicomflow.engine.archive_outputs import ArchiveOutbox
from dicomflow.engine.collector import Collector
from dicomflow.engine.diskspace import SpaceWait, is_no_space
from dicomflow.engine.journal import Journal
from dicomflow.engine.rounds import Rounds
from dicomflow.engine.series_jobs import SeriesStage
from dicomflow.engine.spool import Spool
from dicomflow.engine.trigger import Trigger
from dicomflow.errors import SpoolError

logger = logging.getLogger(__name__)

DEFER_SIZE = 4096


def recover_spool(spool: Spool, collector: Collector) -> set[str]:
    """Offer every instance in ``spool`` to ``collector``; the patients it took any of."""
    patients: set[str] = set()
    for patient_key, path in spool.instances():
        if _recover_instance(collector, patient_key, path):
            patients.add(patient_key)
    return patients


def _recover_instance(collector: Collector, patient_key: str, path: Path) -> bool:
    try:
        dataset = dcmread(path, defer_size=DEFER_SIZE)  # bulk data stays on disk
        uid = str(dataset.SOPInstanceUID)
        header = header_of(dataset)
    except Exception as exc:
        logger.error("spool file %s is unreadable (%s); left in place", path, exc)
        return False
    names = collector.wanted_by(dataset)
    if not names:
        return False
    collector.add(patient_key, names, uid, header, path)
    return True


class Recovery:
    """Resumes what a previous run left: the spool journal first (replayed into the
    spools), then the series, the archive outputs, the rounds and the spooled instances;
    then instances are accepted.

    While the disk is too full for the journal to be replayed or made, instances are
    refused (out of resources) and all this is done once there is space.
    """

    def __init__(
        self,
        *,
        name: str,
        journal: Journal | None,
        series: SeriesStage | None,
        archive_outbox: ArchiveOutbox,
        rounds: Rounds,
        spool: Spool,
        collector: Collector,
        trigger: Trigger,
        accepting: threading.Event,
    ) -> None:
        self.name = name
        self._journal = journal
        self._series = series
        self._archive_outbox = archive_outbox
        self._rounds = rounds
        self._spool = spool
        self._collector = collector
        self._trigger = trigger
        self._accepting = accepting
        self._space_wait: SpaceWait | None = None
        self._space_problem = ""

    def open_journal(self) -> bool:
        """Open the spool journal; False if the disk is too full for it."""
        if self._journal is None:
            return True
        try:
            self._journal.open([self._spool, *([self._series.spool] if self._series else [])])
        except (SpoolError, OSError) as exc:
            if not is_no_space(exc):
                raise
            if self._space_problem != str(exc):
                logger.error("%s Instances are refused until there is space.", exc)
                self._space_problem = str(exc)
            return False
        return True

    def recover(self) -> set[str]:
        """Resume the series, the archive outputs and the rounds; return the patients
        whose inputs were recovered."""
        if self._series is not None:
            self._series.start()
        self._archive_outbox.recover()
        moved = self._rounds.store.recover_partial()
        patients = recover_spool(self._spool, self._collector)
        pending = self._rounds.resume()
        if moved or patients or pending:
            logger.info(
                "recovered %d patient(s) from the spool and %d unfinished round(s)",
                len(patients),
                len(pending),
            )
        return patients

    def accept(self, journal_open: bool, recovered: set[str]) -> None:
        """Check the ``recovered`` patients and accept instances; or, if the journal could
        not be opened, wait for space to do all that."""
        if journal_open:
            self._accept(recovered)
        else:
            self._space_wait = SpaceWait(self._resume_when_space)
            self._space_wait.start()

    def stop(self) -> None:
        if self._space_wait is not None:
            self._space_wait.stop()
            self._space_wait = None

    def _accept(self, recovered: set[str]) -> None:
        for patient_key in recovered:
            self._trigger.request(patient_key)
        self._accepting.set()

    def _resume_when_space(self) -> bool:
        if not self.open_journal():
            return False
        self._accept(self.recover())
        logger.warning("node %s: there is disk space again; instances are accepted", self.name)
        return True
