"""The running node: wires the SCP, spool, collector, trigger, runner and outbox.

Data directory layout (no raw DICOM value ever becomes a path)::

    spool/incoming/{patient_key}/{sop_instance_uid}.dcm   received, waiting
    journal/segment.journal                               makes received instances durable
    rounds/{round_id}/                                    complete, being processed
    failed/{round_id}/                                    failed: inputs, error.json, process.log
    outbox/{round_id}-{n}/                                results waiting for a peer
    outbox-unsendable/{round_id}-{n}/                     results no peer would take, with why
"""

import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pydicom import Dataset, dcmread
from pydicom.uid import UID

from dicomflow import metrics
from dicomflow.dicom.header import header_of
from dicomflow.dicom.integrity import decode_part10
from dicomflow.dicom.keys import shorten, value_key
from dicomflow.dicom.pixel_length import check_pixel_data_length
from dicomflow.dicom.tags import parse_tag
from dicomflow.engine.durable import keep_private
from dicomflow.engine.journal import Journal
from dicomflow.engine.series import SeriesConsumer, SeriesStage
from dicomflow.engine.spool import Spool
from dicomflow.errors import (
    DicomflowError,
    InstanceTooLargeError,
    NotArchivableError,
    SpoolError,
    UnreadableInstanceError,
)
from dicomflow.net import storage as status
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.address import Address
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.storage import SUCCESS as STATUS_SUCCESS
from dicomflow.net.storage import AccessPolicy, ReceivedInstance
from dicomflow.node.archive_outbox import ArchiveOutbox
from dicomflow.node.collector import Collector
from dicomflow.node.datalock import DataDirectoryLock
from dicomflow.node.diskspace import SpaceWait, is_no_space
from dicomflow.node.input import InputOptions
from dicomflow.node.outbox import Outbox
from dicomflow.node.output import OUTPUT_MANIFEST
from dicomflow.node.reference import PipelineRef
from dicomflow.node.round import Round, RoundStore
from dicomflow.node.runner import Outcome, Runner
from dicomflow.node.screen import Screen
from dicomflow.node.trigger import Trigger
from dicomflow.node.watcher import JobWatcher
from dicomflow.node.workers import LocalWorkers
from dicomflow.queue.backend import PerThreadBackend
from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

DONE_MARKER = "DONE"
PATIENT_ID = 0x00100020
DEFER_SIZE = 4096
ROUND_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class NodeCounters:
    """What the node has done since it started."""

    received: int = 0
    refused: int = 0
    discarded: int = 0
    rounds_started: int = 0
    rounds_succeeded: int = 0
    rounds_failed: int = 0
    delivered: int = 0
    worker_restarts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)


class Node:
    """A node: a pipeline, registry services (``consumer``), or both.

    Creating one claims its data directory (:mod:`dicomflow.node.datalock`) until
    ``stop()``; ``start()`` resumes unfinished work, then serves.

    Raises:
        DataDirectoryInUseError: another node runs on this data directory.
    """

    def __init__(
        self,
        pipeline_class: Any,
        settings: NodeSettings,
        consumer: SeriesConsumer | None = None,
        screen: Screen | None = None,
    ) -> None:
        self.pipeline_class = pipeline_class
        self.settings = settings
        self.screen = screen
        self.name = _name(pipeline_class)
        self.counters = NodeCounters()
        root = settings.data_directory.resolve()
        keep_private(root)
        self._data_lock = DataDirectoryLock(root)
        self._data_lock.acquire()  # before the spools clear their temporary files
        try:
            self._assemble(root, consumer)
        except BaseException:
            self._data_lock.release()
            raise

    def _assemble(self, root: Path, consumer: SeriesConsumer | None) -> None:
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
        self.rounds = RoundStore(root, self.spool)
        self.collector = Collector(
            pipeline_class.input if pipeline_class else {}, InputOptions(ae_title=settings.ae_title)
        )
        self.trigger = Trigger(self._check_patient, settings.quiet_period_s)
        self.outbox = Outbox(
            root / "outbox",
            calling_ae_title=settings.ae_title,
            retries=settings.export_retries,
            backoff_s=settings.export_backoff_s,
            retry_interval_s=settings.outbox_retry_interval_s,
            on_delivered=lambda _item: self.counters.add("delivered"),
        )
        self._patient_tag = parse_tag(getattr(pipeline_class, "patient_identifier_tag", PATIENT_ID))
        self._round_lock = threading.Lock()
        self._accepting = threading.Event()  # set once the spools are recovered
        self._space_wait: SpaceWait | None = None
        self._space_problem = ""
        self._uploads = itertools.count(1)
        self._callers: dict[str, tuple[str, str]] = {}  # patient key -> last (AE title, IP)
        self.scp: StoreSCP | LeanStoreSCP | None = None
        self.runner: Runner | None = None
        self.series: SeriesStage | None = None
        url = settings.resolved_queue_url()
        self.watcher = JobWatcher(url)
        self._queue = PerThreadBackend(url)
        self.archive_outbox = ArchiveOutbox(
            root / "archive-outbox", self.watcher, self._protected()
        )
        self.workers = LocalWorkers(
            with_options(
                url, {"preload": ",".join(_preload(pipeline_class)), **settings.job_options()}
            ),
            settings.local_workers(),
            log_level=settings.log_level,
            log_file=root / "logs" / "workers.log",
            on_restart=lambda: self.counters.add("worker_restarts"),
        )
        if consumer is not None:
            self._add_services(root, consumer)

    def _add_services(self, root: Path, consumer: SeriesConsumer) -> None:
        self.series = SeriesStage(
            root / "series",
            consumer,
            self.watcher,
            self._export_folder,
            quiet_period_s=self.settings.series_quiet_period_s,
            fsync=self.settings.fsync,
            protected=self._protected(),
            journal=self.journal,
        )

    @property
    def port(self) -> int:
        return self.scp.port if self.scp is not None else self.settings.port

    def start(self) -> None:
        """Resume what a previous run left, then accept associations.

        While the disk is too full for the spool journal to be replayed or made, the
        node answers associations and refuses instances (out of resources), and
        resumes once there is space."""
        policy = AccessPolicy.build(self.settings.allowed_ae_titles, self.settings.allowed_ips)
        if not (policy.ae_titles or policy.networks):
            logger.warning("no allowed_ae_titles or allowed_ips: accepting every peer")
        journal_open = self._open_journal()  # before anything reads the spools
        if self.pipeline_class is not None:
            self.runner = self._runner()
        self.workers.start()
        self.watcher.start()
        recovered = self._recover_spools() if journal_open else set()
        self.trigger.start()
        self.outbox.start()
        server_class: Callable[..., StoreSCP | LeanStoreSCP] = StoreSCP
        if self.settings.receiver == "lean":
            server_class = partial(
                LeanStoreSCP, maximum_held_bytes=self.settings.maximum_held_bytes
            )
        self.scp = server_class(
            ae_title=self.settings.ae_title,
            ip=self.settings.ip,
            port=self.settings.port,
            on_store=self._on_store,
            on_release=self.trigger.released,
            policy=policy,
            on_refused=lambda reason, _value: self.counters.add("refused"),
            require_called_ae_title=self.settings.require_called_ae_title,
            maximum_associations=self.settings.maximum_associations,
            request_timeout_s=self.settings.association_request_timeout_s,
            idle_timeout_s=self.settings.association_idle_timeout_s,
            maximum_instance_bytes=self.settings.maximum_instance_bytes,
        )
        if journal_open:
            self._accept(recovered)
        else:
            self._space_wait = SpaceWait(self._resume_when_space)
            self._space_wait.start()
        logger.info(
            "node %s listening on %s:%d as %s",
            self.name,
            self.settings.ip,
            self.port,
            self.settings.ae_title,
        )

    def _open_journal(self) -> bool:
        """Open the spool journal; False if the disk is too full for it."""
        if self.journal is None:
            return True
        try:
            self.journal.open([self.spool, *([self.series.spool] if self.series else [])])
        except (SpoolError, OSError) as exc:
            if not is_no_space(exc):
                raise
            if self._space_problem != str(exc):
                logger.error("%s Instances are refused until there is space.", exc)
                self._space_problem = str(exc)
            return False
        return True

    def _recover_spools(self) -> set[str]:
        """Resume the series and the rounds; the patients whose inputs were recovered."""
        if self.series is not None:
            self.series.start()
        return self._recover()

    def _accept(self, recovered: set[str]) -> None:
        for patient_key in recovered:
            self.trigger.request(patient_key)
        self._accepting.set()

    def _resume_when_space(self) -> bool:
        if not self._open_journal():
            return False
        self._accept(self._recover_spools())
        logger.warning("node %s: there is disk space again; instances are accepted", self.name)
        return True

    def _runner(self) -> Runner:
        return Runner(
            PipelineRef.of(self.pipeline_class),
            url=self.watcher.url,
            watcher=self.watcher,
            endpoints=self.settings.endpoint_addresses(),
            ae_title=self.settings.ae_title,
            timeout_s=self.settings.processing_timeout_s,
            log_dir=self.settings.job_log_directory() if not self.settings.queue_url else None,
            on_done=self._round_done,
            protected=self._protected(),
        )

    def _protected(self) -> tuple[Path, ...]:
        """What jobs may not write (but their own folders): the data directory, unless
        ``job_write_protection`` is off."""
        if not self.settings.job_write_protection:
            return ()
        return (self.settings.data_directory.resolve(),)

    def stop(self) -> None:
        """Stop serving (idempotent); unfinished work stays on disk for the next start."""
        if self.scp is None:
            self._data_lock.release()
            return
        self.scp.close()
        self.scp = None
        if self._space_wait is not None:
            self._space_wait.stop()
            self._space_wait = None
        self.trigger.stop()
        if self.runner is not None:
            self.runner.close()
        self.runner = None
        self.archive_outbox.stop()
        for part in (self.series, self.watcher, self.workers):
            if part is not None:
                part.stop()
        self.outbox.stop()
        if self.journal is not None:
            self.journal.close()
        self._data_lock.release()
        logger.info("node %s stopped", self.name)

    # -- receiving -----------------------------------------------------------------

    def _on_store(self, instance: ReceivedInstance) -> int:
        """Keep a C-STORE's instance (decoded and checked at the network edge, which
        also turns the errors raised here into statuses)."""
        instance.maximum_bytes = min(instance.maximum_bytes, self.settings.maximum_instance_bytes)
        dataset = instance.dataset
        if "SOPInstanceUID" not in dataset:
            raise UnreadableInstanceError("The dataset has no SOPInstanceUID.")
        return self._keep(instance, dataset, str(dataset.SOPInstanceUID))

    def receive(self, encoded: bytes, origin: str) -> int:
        """Store one Part-10 instance that arrived other than by C-STORE, exactly as a
        C-STORE would be stored; return the DICOM status a C-STORE would get. The
        instance is its own "association": its patient is checked once it is stored."""
        with self.upload(origin) as receive:
            return receive(encoded)

    @contextlib.contextmanager
    def upload(self, origin: str) -> Iterator[Callable[[bytes], int]]:
        """One upload (a STOW-RS request) as one association: the function it gives
        stores one Part-10 instance and returns its DICOM status; the patients are
        checked when the upload ends, as after an association's release."""
        association_id = -next(self._uploads)
        try:
            yield partial(self._receive, origin, association_id)
        finally:
            self.trigger.released(association_id)

    def _receive(self, origin: str, association_id: int, encoded: bytes) -> int:
        metrics.BYTES_RECEIVED.inc(len(encoded))
        try:
            dataset = _decoded_upload(encoded, self.settings.maximum_instance_bytes)
            uid = str(dataset.SOPInstanceUID)
            return self._keep(_Upload(association_id, encoded), dataset, uid)
        except (Exception, MemoryError) as exc:
            self.counters.add("refused")
            return status.refused(origin, exc)

    def _keep(self, instance: "ReceivedInstance | _Upload", dataset: Dataset, uid: str) -> int:
        if not self._accepting.is_set():
            raise SpoolError(f"Instance {shorten(uid)} refused: the node waits for disk space.")
        try:  # values pydicom cannot convert (an unknown VR) raise when first read
            names = self.collector.wanted_by(dataset)
            patient_value = self._patient_value(dataset)
            series_uid = dataset.get("SeriesInstanceUID") if self.series is not None else None
            refusal = self._archive_refusal(dataset)
        except Exception as exc:
            raise UnreadableInstanceError(f"The dataset cannot be decoded: {exc}") from exc
        if self.screen is not None and not self.screen.admits(dataset, uid):
            self.counters.add("discarded")
            metrics.INSTANCES_DISCARDED.inc()
            return self.screen.discarded_status
        if not names and self.series is None:
            logger.info("instance %s matches no input of %s; not kept", shorten(uid), self.name)
            self.counters.add("discarded")
            metrics.INSTANCES_DISCARDED.inc()
            return STATUS_SUCCESS
        if refusal is not None:
            raise NotArchivableError(f"Instance {shorten(uid)} cannot be archived: {refusal}")
        patient_key = value_key(patient_value)
        path = self._store(instance, series_uid, uid, patient_key, names)  # raises to the edge
        if names:
            if isinstance(instance, ReceivedInstance):
                self._callers[patient_key] = (instance.calling_ae_title, instance.peer_ip)
            self.collector.add(patient_key, names, uid, header_of(dataset), path)
            self.trigger.arrived(instance.association_id, patient_key)
        self.counters.add("received")
        metrics.INSTANCES_RECEIVED.inc()
        return STATUS_SUCCESS

    def _archive_refusal(self, dataset: Dataset) -> str | None:
        """Why the series stage's archive could not file ``dataset`` (None if it can, or
        if nothing is archived)."""
        refusal = getattr(self.series.consumer, "refusal", None) if self.series else None
        return None if refusal is None else refusal(dataset)

    def _store(
        self,
        instance: "ReceivedInstance | _Upload",
        series_uid: object,
        uid: str,
        patient_key: str,
        names: list[str],
    ) -> Path:
        """Store durably for the pipeline's inputs and/or the services' series."""
        if self.series is None:
            return self.spool.store(patient_key, uid, instance.encoded_parts())
        if not names:
            return self.series.store(series_uid, uid, instance.encoded_parts())
        series_key = value_key(series_uid)
        also = [(self.series.spool, series_key)]
        path = self.spool.store(patient_key, uid, instance.encoded_parts(), links=also)
        self.series.added(series_key, uid, self.series.spool.path_for(series_key, uid))
        return path

    def _export_folder(self, name: str, folder: Path, processed_at: float | None) -> None:
        """Send the DICOM files of ``folder`` (a service job's results, made at
        ``processed_at``) to every endpoint via the outbox, each a copy."""
        for index, address in enumerate(self.settings.endpoint_addresses()):
            staging = folder.parent / f".{folder.name}.outbox-{index}"
            shutil.copytree(folder, staging, dirs_exist_ok=True)
            destination = {
                "kind": "dicom",
                "ip": address.ip,
                "port": address.port,
                "ae_title": address.ae_title,
                "processed_at": processed_at,
                "stage_kind": metrics.KIND_SERVICE,
            }
            self.outbox.add(f"{name}-{index}", staging, destination)

    def _patient_value(self, dataset: Dataset) -> object:
        element = dataset.get(self._patient_tag)
        return None if element is None else element.value

    # -- rounds --------------------------------------------------------------------

    def _check_patient(self, patient_key: str) -> None:
        with self._round_lock:
            self.spool.settle()  # raises while the spool cannot be written: nothing taken yet
            arrivals = self.collector.arrivals(patient_key)
            members = self.collector.take_if_complete(patient_key)
            if members is None:
                return
            caller = self._callers.pop(patient_key, None)
            job = self.rounds.create(self.name, patient_key, members, caller)
        last_arrival = arrivals[1] if arrivals else None
        metrics.observe_stage(metrics.INPUTS_COMPLETE, last_arrival, job.created)
        count = sum(len(paths) for paths in members.values())
        logger.info(
            "round %s: patient %s complete with %d instance(s)",
            job.round_id,
            patient_key[:12],
            count,
        )
        self._submit(job)
        if self.collector.state(patient_key):  # instances an input refused: their own round?
            self.trigger.request(patient_key)

    def _submit(self, job: Round) -> None:
        if self.runner is not None:
            self.runner.submit(job)
            self.counters.add("rounds_started")

    def _round_done(self, job: Round, outcome: Outcome) -> None:
        if not outcome.ok:
            target = self.rounds.fail(job, outcome.error)
            self.counters.add("rounds_failed")
            logger.error(
                "round %s failed; inputs kept in %s: %s", job.round_id, target, outcome.error
            )
            return
        self.rounds.processed(job, outcome.ended_at)
        (job.directory / DONE_MARKER).touch()
        self.counters.add("rounds_succeeded")  # before export: a delivery implies the count
        self._export(job)
        logger.info("round %s: processed in %.2fs", job.round_id, outcome.duration_s)

    def _export(self, job: Round) -> None:
        manifest_path = job.output_dir / OUTPUT_MANIFEST
        manifest = (
            json.loads(manifest_path.read_text()) if manifest_path.exists() else {"outputs": []}
        )
        for entry in manifest["outputs"]:
            folder = job.output_dir / entry["folder"]
            if not folder.exists():
                continue
            if entry["kind"] == "archive":
                self._archive_output(f"{job.round_id}-{entry['folder']}", folder, entry)
            else:  # C-STORE to a peer, or files into a folder: through the outbox
                timed = {**entry, "processed_at": job.processed_at}
                self.outbox.add(f"{job.round_id}-{entry['folder']}", folder, timed)
        if self.settings.keep_inputs:
            self._keep_processed(job)
        self.rounds.finish(job)

    def _archive_output(self, name: str, folder: Path, entry: dict[str, Any]) -> None:
        """Hand a round's archive output to the archive outbox (see there)."""
        self.archive_outbox.add(name, folder, str(entry["datastore"]))

    def _keep_processed(self, job: Round) -> None:
        target = self.settings.data_directory.resolve() / "processed" / job.round_id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(job.instances_dir, target)

    # -- recovery ------------------------------------------------------------------

    def _recover(self) -> set[str]:
        self.archive_outbox.recover()
        moved = self.rounds.recover_partial()
        patients: set[str] = set()
        for patient_key, path in self.spool.instances():
            if self._recover_instance(patient_key, path):
                patients.add(patient_key)
        pending = self.rounds.pending()
        for job in pending:
            if (job.directory / DONE_MARKER).exists():
                self._export(job)
            else:
                self._submit(job)
        if moved or patients or pending:
            logger.info(
                "recovered %d patient(s) from the spool and %d unfinished round(s)",
                len(patients),
                len(pending),
            )
        return patients

    def _recover_instance(self, patient_key: str, path: Path) -> bool:
        try:
            dataset = dcmread(path, defer_size=DEFER_SIZE)  # bulk data stays on disk
            uid = str(dataset.SOPInstanceUID)
            header = header_of(dataset)
        except Exception as exc:
            logger.error("spool file %s is unreadable (%s); left in place", path, exc)
            return False
        names = self.collector.wanted_by(dataset)
        if not names:
            return False
        self.collector.add(patient_key, names, uid, header, path)
        return True

    # -- retrying ------------------------------------------------------------------

    def retry_round(self, round_id: str, job_id: str) -> None:
        """Run a failed round again: its folder goes back from ``failed/`` to ``rounds/``,
        its job ``job_id`` is requeued and followed like a new one (results exported).

        Raises:
            DicomflowError: if the node runs no pipeline, the round is not a failed one,
                or the queue refuses to requeue the job.
        """
        runner = self.runner
        failed = self.rounds.failed / round_id
        if runner is None or not ROUND_ID.fullmatch(round_id) or not failed.is_dir():
            raise DicomflowError(
                f'Round "{shorten(round_id)}" is not a failed round of {self.name}.'
            )
        with self._round_lock:
            target = self.rounds.rounds / round_id
            os.replace(failed, target)
            job = self.rounds.load(target)
            try:
                self._queue.get().requeue(job_id)
            except Exception:
                os.replace(target, failed)  # still failed, with its error.json
                raise
            (target / "error.json").unlink(missing_ok=True)
        runner.submit(job)
        logger.info("round %s: retried as job %s", round_id, job_id)


def _decoded_upload(encoded: bytes, maximum_bytes: int) -> Dataset:
    """An uploaded Part-10 instance, decoded; :class:`UnreadableInstanceError` if it cannot
    be, :class:`InstanceTooLargeError` if it inflates past ``maximum_bytes``,
    :class:`DatasetMismatchError` if its native Pixel Data contradicts its Image Pixel module
    (an upload has no command, so this is the one check of the network edge that applies)."""
    try:
        dataset = decode_part10(encoded, maximum_bytes=maximum_bytes)
        dataset.SOPInstanceUID  # noqa: B018 - present, or the instance cannot be kept
    except InstanceTooLargeError:
        raise
    except Exception as exc:
        raise UnreadableInstanceError(f"The instance cannot be decoded: {exc}") from exc
    check_pixel_data_length(dataset, UID(dataset.file_meta.TransferSyntaxUID))
    return dataset


@dataclass
class _Upload:
    """An instance that arrived by upload: what :meth:`Node._keep` needs of it."""

    association_id: int
    data: bytes

    def encoded_parts(self) -> tuple[bytes]:
        return (self.data,)


def _preload(pipeline_class: Any) -> list[str]:
    """What the workers' fork server imports once: dicomflow's job code, pydicom, numpy
    and the pipeline's module (by file, as ``module@path``)."""
    modules = ["dicomflow.node.worker", "pydicom", "numpy"]
    if pipeline_class is None:
        return modules
    ref = PipelineRef.of(pipeline_class)
    name = "__mp_main__" if ref.module in ("__main__", "__mp_main__") else ref.module
    return [*modules, f"{name}@{ref.path}" if ref.path else name]


def with_options(url: str, options: dict[str, object]) -> str:
    """``url`` with the queue ``options`` added (each unless the URL has it already)."""
    query = url.partition("?")[2]
    present = {pair.partition("=")[0] for pair in query.split("&") if pair}
    added = {key: value for key, value in options.items() if key not in present}
    if not added:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode(added)}"


def _name(pipeline_class: Any) -> str:
    if pipeline_class is None:
        return "services"
    return f"{pipeline_class.__module__}.{pipeline_class.__qualname__}"


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


__all__ = ["Address", "Node"]
