"""The running node: wires the stages, starts and stops them, and recovers at start-up.

Stages (each owns one job): :mod:`~dicomflow.engine.ingest` (receiving),
:mod:`~dicomflow.engine.collector` and :mod:`~dicomflow.engine.trigger` (when a patient
is complete), :mod:`~dicomflow.engine.rounds` (the round lifecycle),
:mod:`~dicomflow.engine.export` (results to the outboxes), and the series stage.

Data directory layout (no raw DICOM value ever becomes a path)::

    spool/incoming/{patient_key}/{sop_instance_uid}.dcm   received, waiting
    journal/segment.journal                               makes received instances durable
    rounds/{round_id}/                                    complete, being processed
    failed/{round_id}/                                    failed: inputs, error.json, process.log
    outbox/{round_id}-{n}/                                results waiting for a peer
    outbox-unsendable/{round_id}-{n}/                     results no peer would take, with why
"""

import logging
import ssl
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

from dicomflow import audit
from dicomflow.address import Address
from dicomflow.cod.catalog import Catalog, open_catalog
from dicomflow.dicom.tags import parse_tag
from dicomflow.durable import keep_private
from dicomflow.engine.archive_deid import archive_deid
from dicomflow.engine.archive_outputs import ArchiveOutbox
from dicomflow.engine.collector import Collector
from dicomflow.engine.counters import Count, NodeCounters
from dicomflow.engine.datalock import DataDirectoryLock
from dicomflow.engine.deidentification import check_deid_settings, deid_in_use
from dicomflow.engine.export import Export
from dicomflow.engine.ingest import (
    Callers,
    Ingest,
    access_policy,
    listening_tls,
    open_acceptor,
)
from dicomflow.engine.journal import Journal
from dicomflow.engine.outbox import Outbox
from dicomflow.engine.pipeline_ref import PipelineRef, qualified_name
from dicomflow.engine.protocols import PipelineClass
from dicomflow.engine.query_retrieve import ArchiveQueryRetrieve
from dicomflow.engine.recovery import Recovery
from dicomflow.engine.round_runner import RoundRunner
from dicomflow.engine.round_store import RoundStore
from dicomflow.engine.rounds import Rounds
from dicomflow.engine.screen import Screen
from dicomflow.engine.series_jobs import SeriesConsumer, SeriesStage
from dicomflow.engine.spool import Spool
from dicomflow.engine.trigger import Trigger
from dicomflow.engine.watcher import JobWatcher
from dicomflow.engine.worker_processes import LocalWorkers, preload_modules, with_options
from dicomflow.errors import CatalogError, DeidConfigError, TLSConfigurationError
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.requestor import use_client_tls
from dicomflow.net.storage import AccessPolicy
from dicomflow.queue.backend import PerThreadBackend
from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

PATIENT_ID = 0x00100020


class Node:
    """A node: a pipeline, registry services (``consumer``), or both.

    Creating one claims its data directory (:mod:`dicomflow.engine.datalock`) until
    ``stop()``; ``start()`` resumes unfinished work, then serves.

    Raises:
        DataDirectoryInUseError: another node runs on this data directory.
    """

    def __init__(
        self,
        pipeline_class: PipelineClass | None,
        settings: NodeSettings,
        consumer: SeriesConsumer | None = None,
        screen: Screen | None = None,
    ) -> None:
        self.pipeline_class = pipeline_class
        self.settings = settings
        self.name = _name(pipeline_class)
        self.counters = NodeCounters()
        root = settings.data_directory.resolve()
        keep_private(root)
        self._data_lock = DataDirectoryLock(root)
        self._data_lock.acquire()  # before the spools clear their temporary files
        try:
            self._wire(root, consumer, screen)
        except BaseException:
            self._data_lock.release()
            raise

    def _wire(self, root: Path, consumer: SeriesConsumer | None, screen: Screen | None) -> None:
        """Make the stages, each given what it needs of the others (never this node)."""
        url = self.settings.resolved_queue_url()
        store = self._wire_storage(root)
        self._wire_outputs(root, url, store)
        self.series = self._series_stage(root, consumer)
        self._wire_rounds(store, screen)
        self.workers = self._local_workers(root, url)
        self.scp: StoreSCP | LeanStoreSCP | None = None  # on `port`
        self.tls_scp: StoreSCP | LeanStoreSCP | None = None  # on `tls_port`, beside `port`
        self.tls_context: ssl.SSLContext | None = None
        self.catalog: Catalog | None = None  # open while serving Query/Retrieve
        self.recovery = Recovery(
            name=self.name,
            journal=self.journal,
            series=self.series,
            archive_outbox=self.archive_outbox,
            rounds=self.rounds,
            spool=self.spool,
            collector=self.collector,
            trigger=self.trigger,
            accepting=self.ingest.accepting,
        )

    def _wire_storage(self, root: Path) -> RoundStore:
        """The journal in front of the spool, the rounds' store and the collector."""
        settings, pipeline_class = self.settings, self.pipeline_class
        self.journal: Journal | None = None
        if settings.fsync and settings.spool_journal_max_bytes > 0:
            self.journal = Journal(
                root / "journal",
                max_instance_bytes=settings.spool_journal_max_bytes,
                segment_bytes=settings.spool_journal_segment_bytes,
            )
        self.spool = Spool(
            root / "spool", fsync=settings.fsync, journal=self.journal, journal_name="pipeline"
        )
        inputs = pipeline_class.input if pipeline_class else {}
        options = pipeline_class._input_options(settings.ae_title) if pipeline_class else None
        self.collector = Collector(inputs, options)  # an input that cannot be made stops here
        return RoundStore(root, self.spool)

    def _wire_outputs(self, root: Path, url: str, store: RoundStore) -> None:
        """The job watcher and queue, the outboxes and the export stage."""
        settings, counters = self.settings, self.counters
        self.watcher = JobWatcher(url)
        self._queue = PerThreadBackend(url)
        self.outbox = Outbox(
            root / "outbox",
            calling_ae_title=settings.ae_title,
            retries=settings.export_retries,
            backoff_s=settings.export_backoff_s,
            retry_interval_s=settings.outbox_retry_interval_s,
            on_delivered=lambda _item: counters.add(Count.DELIVERED),
            client_tls=settings.tls_files(),
        )
        self.archive_outbox = ArchiveOutbox(
            root / "archive-outbox", self.watcher, self._protected(), archive_deid(settings)
        )
        self.export = Export(
            outbox=self.outbox, archive_outbox=self.archive_outbox, store=store, settings=settings
        )

    def _series_stage(self, root: Path, consumer: SeriesConsumer | None) -> SeriesStage | None:
        """The registry services' series stage, when a consumer schedules them."""
        if consumer is None:
            return None
        return SeriesStage(
            root / "series",
            consumer,
            self.watcher,
            self.export.service_folder,
            quiet_period_s=self.settings.series_quiet_period_s,
            fsync=self.settings.fsync,
            protected=self._protected(),
            journal=self.journal,
        )

    def _wire_rounds(self, store: RoundStore, screen: Screen | None) -> None:
        """Rounds, the trigger that starts them, and ingest that feeds the trigger."""
        settings, pipeline_class = self.settings, self.pipeline_class
        callers = Callers()
        self.rounds = Rounds(
            name=self.name,
            store=store,
            spool=self.spool,
            collector=self.collector,
            queue=self._queue,
            counters=self.counters,
            take_caller=callers.take,
            export=self.export,
        )
        self.trigger = Trigger(self.rounds.check_patient, settings.quiet_period_s)
        self.ingest = Ingest(
            name=self.name,
            settings=settings,
            patient_tag=parse_tag(getattr(pipeline_class, "patient_identifier_tag", PATIENT_ID)),
            spool=self.spool,
            series=self.series,
            collector=self.collector,
            trigger=self.trigger,
            screen=screen,
            counters=self.counters,
            callers=callers,
        )

    def _local_workers(self, root: Path, url: str) -> LocalWorkers:
        settings, counters = self.settings, self.counters
        preload = ",".join(preload_modules(self.pipeline_class))
        return LocalWorkers(
            with_options(url, {"preload": preload, **settings.job_options()}),
            settings.local_workers(),
            log_level=settings.log_level,
            log_file=root / "logs" / "workers.log",
            on_restart=lambda: counters.add(Count.WORKER_RESTARTS),
        )

    @property
    def port(self) -> int:
        return self.scp.port if self.scp is not None else self.settings.port

    @property
    def tls_port(self) -> int | None:
        """The port that speaks DICOM TLS: ``tls_port``, or ``port`` when that does."""
        if self.tls_scp is not None:
            return self.tls_scp.port
        return self.port if self.tls_context is not None else None

    # -- the stages' entry points for the dashboard and STOW-RS (see there) --------

    def upload(self, origin: str) -> AbstractContextManager[Callable[[bytes], int]]:
        return self.ingest.upload(origin)

    def retry_round(self, round_id: str, job_id: str) -> None:
        self.rounds.retry(round_id, job_id)

    def start(self) -> None:
        """Resume what a previous run left, then accept associations.

        While the disk is too full for the spool journal to be replayed or made, the
        node answers associations and refuses instances (out of resources), and
        resumes once there is space.

        Raises:
            TLSConfigurationError: a TLS file cannot be used (before anything starts).
            DeidConfigError: a de-identification setting is wrong (likewise).
        """
        try:
            if deid_in_use(self.settings):
                check_deid_settings(self.settings)
            self.tls_context = listening_tls(self.settings)
            query_retrieve = self._query_retrieve()
        except (TLSConfigurationError, CatalogError, DeidConfigError):
            self._data_lock.release()
            raise
        policy = access_policy(self.settings)
        settings = self.settings
        audit.configure(
            settings.audit_log_file(), settings.audit_log_max_bytes, settings.audit_log_backups
        )
        journal_open = self.recovery.open_journal()  # before anything reads the spools
        if self.pipeline_class is not None:
            self.rounds.runner = self._runner(self.pipeline_class)
        self.workers.start()
        self.watcher.start()
        recovered = self.recovery.recover() if journal_open else set()
        self.trigger.start()
        self.outbox.start()
        self._open_receivers(policy, query_retrieve)
        self.recovery.accept(journal_open, recovered)
        logger.info(
            "node %s listening on %s as %s", self.name, self._listening(), self.settings.ae_title
        )

    def _query_retrieve(self) -> ArchiveQueryRetrieve | None:
        """C-FIND, C-MOVE and C-GET over the archive's catalog, when the node keeps an
        archive (:class:`CatalogError` if the catalog cannot be opened)."""
        settings = self.settings
        datastore = settings.archive_datastore
        if datastore is None:
            return None
        location = settings.catalog_location()
        if location is None:
            return None
        self.catalog = open_catalog(location)
        use_client_tls(settings.tls_files())  # the lean receiver's C-MOVE to ?tls destinations
        destinations = settings.move_destination_addresses()
        return ArchiveQueryRetrieve(
            self.catalog, datastore, destinations, ae_title=settings.ae_title
        )

    def _open_receivers(
        self, policy: AccessPolicy, query_retrieve: ArchiveQueryRetrieve | None
    ) -> None:
        """The receiver on `port` (TLS when a certificate is set and no `tls_port`), and
        with `tls_port` a second one speaking TLS there, both feeding the same ingest and
        answering Query/Retrieve with ``query_retrieve``."""
        open_one = partial(
            open_acceptor,
            self.settings,
            policy,
            self.ingest,
            on_release=self.trigger.released,
            on_refused=lambda _reason, _value: self.counters.add(Count.REFUSED),
            query_retrieve=query_retrieve,
        )
        context, tls_port = self.tls_context, self.settings.tls_port
        separate = context is not None and tls_port is not None
        self.scp = open_one(tls_context=None if separate else context)
        if separate:
            try:
                self.tls_scp = open_one(port=tls_port, tls_context=context)
            except BaseException:
                self.scp.close()
                self.scp = None
                raise

    def _listening(self) -> str:
        """Where the node listens, and which port speaks what, for its log."""
        where = f"{self.settings.ip}:{self.port}"
        if self.tls_context is None:
            return where
        kind = "DICOM TLS, mutual" if self.settings.tls_files().mutual else "DICOM TLS"
        if self.tls_scp is None:
            return f"{where} ({kind})"
        return f"{where} (plain) and {self.settings.ip}:{self.tls_scp.port} ({kind})"

    def _runner(self, pipeline_class: PipelineClass) -> RoundRunner:
        settings = self.settings
        return RoundRunner(
            PipelineRef.of(pipeline_class),
            url=self.watcher.url,
            watcher=self.watcher,
            endpoints=settings.endpoint_addresses(),
            ae_title=settings.ae_title,
            timeout_s=settings.processing_timeout_s,
            log_dir=settings.job_log_directory() if not settings.queue_url else None,
            on_done=self.rounds.done,
            protected=self._protected(),
            client_tls=settings.tls_files(),
        )

    def _protected(self) -> tuple[Path, ...]:
        """What jobs may not write (but their own folders): the data directory, unless
        ``job_write_protection`` is off."""
        if not self.settings.job_write_protection:
            return ()
        return (self.settings.data_directory.resolve(),)

    def stop(self) -> None:
        """Stop serving (idempotent); unfinished work stays on disk for the next start.

        A part that takes longer than :data:`SLOW_STOP_S` to stop is named in a warning.
        """
        if self.scp is None:
            if self.catalog is not None:  # opened by a start() that failed later
                self.catalog.close()
            self._data_lock.release()
            return
        scp, self.scp = self.scp, None
        tls_scp, self.tls_scp = self.tls_scp, None
        runner, self.rounds.runner = self.rounds.runner, None
        parts: list[tuple[str, Any]] = [
            ("receiver", scp.close),
            ("TLS receiver", tls_scp.close if tls_scp is not None else None),
            ("recovery", self.recovery.stop),
            ("trigger", self.trigger.stop),
            ("round runner", runner.close if runner is not None else None),
            ("archive outbox", self.archive_outbox.stop),
            ("series stage", self.series.stop if self.series is not None else None),
            ("job watcher", self.watcher.stop if self.watcher is not None else None),
            ("local workers", self.workers.stop if self.workers is not None else None),
            ("outbox", self.outbox.stop),
            ("journal", self.journal.close if self.journal is not None else None),
            ("catalog", self.catalog.close if self.catalog is not None else None),
        ]
        for name, stop in parts:
            if stop is not None:
                _timed_stop(name, stop)
        self._data_lock.release()
        logger.info("node %s stopped", self.name)


SLOW_STOP_S = 2.0


def _timed_stop(name: str, stop: Callable[[], None]) -> None:
    started = time.monotonic()
    stop()
    took = time.monotonic() - started
    if took > SLOW_STOP_S:
        logger.warning("stopping the %s took %.1f s", name, took)


def _name(pipeline_class: PipelineClass | None) -> str:
    if pipeline_class is None:
        return "services"
    return f"{pipeline_class.__module__}.{qualified_name(pipeline_class)}"


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


__all__ = ["Address", "Node"]
