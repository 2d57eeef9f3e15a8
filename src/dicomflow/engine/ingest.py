"""Receiving: an instance that arrived (by C-STORE or upload) is decoded, checked, kept
durably in the spool (and the series stage's spool), then offered to the collector and
noted by the trigger.

Refusals are typed errors (:mod:`dicomflow.errors`); the edge turns them into statuses
with :mod:`dicomflow.net.storage`'s table: the acceptor for a C-STORE, STOW-RS for an
upload. What is returned here is the status of a kept or discarded instance.
"""

import contextlib
import itertools
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import UID

from dicomflow import metrics, tls
from dicomflow.dicom.header import header_of
from dicomflow.dicom.integrity import decode_part10
from dicomflow.dicom.keys import shorten, value_key
from dicomflow.dicom.pixel_length import check_pixel_data_length
from dicomflow.engine.collector import Collector
from dicomflow.engine.counters import Count, NodeCounters
from dicomflow.engine.screen import Screen
from dicomflow.engine.series_jobs import SeriesStage
from dicomflow.engine.spool import Spool
from dicomflow.engine.trigger import Trigger
from dicomflow.errors import (
    InstanceTooLargeError,
    NotArchivableError,
    SpoolError,
    TLSConfigurationError,
    UnreadableInstanceError,
)
from dicomflow.net import storage as status
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.query_retrieve import QueryRetrieveProvider
from dicomflow.net.storage import AccessPolicy, ReceivedInstance
from dicomflow.net.user_identity import IdentityPolicy, load_policy
from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

Caller = tuple[str, str]  # the AE title and IP of a peer


class Callers:
    """The last peer that sent an instance of each patient (for the round it completes)."""

    def __init__(self) -> None:
        self._last: dict[str, Caller] = {}

    def note(self, patient_key: str, caller: Caller) -> None:
        self._last[patient_key] = caller

    def take(self, patient_key: str) -> Caller | None:
        """The last peer that sent an instance of ``patient_key``, forgotten."""
        return self._last.pop(patient_key, None)


class Ingest:
    """Keeps what arrives; tells the collector and the trigger.

    Instances are refused (out of resources) until :attr:`accepting` is set, once the
    spools are recovered."""

    def __init__(
        self,
        *,
        name: str,
        settings: NodeSettings,
        patient_tag: int,
        spool: Spool,
        series: SeriesStage | None,
        collector: Collector,
        trigger: Trigger,
        screen: Screen | None,
        counters: NodeCounters,
        callers: Callers,
    ) -> None:
        self.name = name
        self.settings = settings  # read when an instance arrives: its limits may change
        self.accepting = threading.Event()
        self._patient_tag = patient_tag
        self._spool = spool
        self._series = series
        self._collector = collector
        self._trigger = trigger
        self._screen = screen
        self._counters = counters
        self._callers = callers
        self._uploads = itertools.count(1)

    def on_store(self, instance: ReceivedInstance) -> int:
        """Keep a C-STORE's instance (decoded and checked at the network edge, which
        also turns the errors raised here into statuses)."""
        limit = self.settings.maximum_instance_bytes
        instance.maximum_bytes = min(instance.maximum_bytes, limit)
        dataset = instance.dataset
        if "SOPInstanceUID" not in dataset:
            raise UnreadableInstanceError("The dataset has no SOPInstanceUID.")
        return self._keep(instance, dataset, str(dataset.SOPInstanceUID))

    @contextlib.contextmanager
    def upload(self, origin: str) -> Iterator[Callable[[bytes], int]]:
        """One upload (a STOW-RS request) as one association: the function it gives
        stores one Part-10 instance and returns the status of a kept or discarded one,
        or raises the typed error of a refused one; the patients are checked when the
        upload ends, as after an association's release."""
        association_id = -next(self._uploads)
        try:
            yield partial(self._receive, origin, association_id)
        finally:
            self._trigger.released(association_id)

    def _receive(self, origin: str, association_id: int, encoded: bytes) -> int:
        metrics.BYTES_RECEIVED.inc(len(encoded))
        try:
            dataset = _decoded_upload(encoded, self.settings.maximum_instance_bytes)
            uid = str(dataset.SOPInstanceUID)
            return self._keep(_Upload(association_id, encoded), dataset, uid)
        except (Exception, MemoryError):
            self._counters.add(Count.REFUSED)
            raise  # the upload's edge (STOW-RS) turns it into a status

    def _keep(self, instance: "ReceivedInstance | _Upload", dataset: Dataset, uid: str) -> int:
        if not self.accepting.is_set():
            raise SpoolError(f"Instance {shorten(uid)} refused: the node waits for disk space.")
        try:  # values pydicom cannot convert (an unknown VR) raise when first read
            names = self._collector.wanted_by(dataset)
            patient_value = self._patient_value(dataset)
            series_uid = dataset.get("SeriesInstanceUID") if self._series is not None else None
            refusal = self._archive_refusal(dataset)
        except Exception as exc:
            raise UnreadableInstanceError(f"The dataset cannot be decoded: {exc}") from exc
        if self._screen is not None and not self._screen.admits(dataset, uid):
            self._counters.add(Count.DISCARDED)
            metrics.INSTANCES_DISCARDED.inc()
            return self._screen.discarded_status
        if not names and self._series is None:
            logger.info("instance %s matches no input of %s; not kept", shorten(uid), self.name)
            self._counters.add(Count.DISCARDED)
            metrics.INSTANCES_DISCARDED.inc()
            return status.SUCCESS
        if refusal is not None:
            raise NotArchivableError(f"Instance {shorten(uid)} cannot be archived: {refusal}")
        patient_key = value_key(patient_value)
        path = self._store(instance, series_uid, uid, patient_key, names)  # raises to the edge
        if names:
            if isinstance(instance, ReceivedInstance):
                self._callers.note(patient_key, (instance.calling_ae_title, instance.peer_ip))
            self._collector.add(patient_key, names, uid, header_of(dataset), path)
            self._trigger.arrived(instance.association_id, patient_key)
        self._counters.add(Count.RECEIVED)
        metrics.INSTANCES_RECEIVED.inc()
        return status.SUCCESS

    def _archive_refusal(self, dataset: Dataset) -> str | None:
        """Why the series stage's archive could not file ``dataset`` (None if it can, or
        if nothing is archived)."""
        series = self._series
        refusal = getattr(series.consumer, "refusal", None) if series else None
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
        if self._series is None:
            return self._spool.store(patient_key, uid, instance.encoded_parts())
        if not names:
            return self._series.store(series_uid, uid, instance.encoded_parts())
        series_key = value_key(series_uid)
        series_spool = self._series.spool
        also = [(series_spool, series_key)]
        path = self._spool.store(patient_key, uid, instance.encoded_parts(), links=also)
        self._series.added(series_key, uid, series_spool.path_for(series_key, uid))
        return path

    def _patient_value(self, dataset: Dataset) -> object:
        element = dataset.get(self._patient_tag)
        return None if element is None else element.value


def access_policy(settings: NodeSettings) -> AccessPolicy:
    """Which peers the settings let in (a warning if every one); the user identities file
    is read here too, so that an error in it stops the node before anything starts."""
    identity_policy(settings)
    policy = AccessPolicy.build(settings.allowed_ae_titles, settings.allowed_ips)
    if not (policy.ae_titles or policy.networks):
        logger.warning("no allowed_ae_titles or allowed_ips: accepting every peer")
    return policy


def listening_tls(settings: NodeSettings) -> ssl.SSLContext | None:
    """The DICOM TLS context the receiver listens with (PS3.15 Annex B), built once from
    the settings' files; None when no certificate or key is set (plain DICOM).

    Raises:
        TLSConfigurationError: a file cannot be used, or ``tls_port`` has no certificate
            to speak TLS with, or is ``port``.
    """
    files = settings.tls_files()
    if files.certificate is None and files.private_key is None:
        if settings.tls_port is not None:
            raise TLSConfigurationError(
                "tls_port is set but tls_certificate is not: give the certificate and"
                " private key the TLS port presents."
            )
        return None
    if settings.tls_port is not None and settings.tls_port == settings.port != 0:
        raise TLSConfigurationError(
            f"tls_port {settings.tls_port} is also port: give the TLS port a port of its own,"
            " or leave tls_port unset to speak TLS on port."
        )
    return tls.server_context(files)


def identity_policy(settings: NodeSettings) -> IdentityPolicy:
    """The user identities the receivers accept (:class:`UserIdentitiesFileError`, one
    line naming the file and the field, if the file is wrong)."""
    return load_policy(settings.user_identities_file, settings.require_user_identity)


def open_acceptor(
    settings: NodeSettings,
    policy: AccessPolicy,
    ingest: Ingest,
    on_release: Callable[[int], None],
    on_refused: Callable[[str, str], None],
    *,
    port: int | None = None,
    tls_context: ssl.SSLContext | None = None,
    query_retrieve: QueryRetrieveProvider | None = None,
) -> StoreSCP | LeanStoreSCP:
    """Open the network edge that hands C-STOREs to ``ingest``: the receiver the settings
    choose, on their port (or ``port``), with their limits, letting in the peers of
    ``policy``; speaking DICOM TLS with ``tls_context``; answering C-FIND, C-MOVE and
    C-GET with ``query_retrieve`` when given."""
    server_class: Callable[..., StoreSCP | LeanStoreSCP] = partial(
        StoreSCP, client_tls=settings.tls_files()
    )
    if settings.receiver == "lean":
        server_class = partial(LeanStoreSCP, maximum_held_bytes=settings.maximum_held_bytes)
    return server_class(
        query_retrieve=query_retrieve,
        ae_title=settings.ae_title,
        ip=settings.ip,
        port=settings.port if port is None else port,
        tls=tls_context,
        on_store=ingest.on_store,
        on_release=on_release,
        policy=policy,
        on_refused=on_refused,
        require_called_ae_title=settings.require_called_ae_title,
        maximum_associations=settings.maximum_associations,
        request_timeout_s=settings.association_request_timeout_s,
        idle_timeout_s=settings.association_idle_timeout_s,
        maximum_instance_bytes=settings.maximum_instance_bytes,
        identity_policy=identity_policy(settings),
    )


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
    """An instance that arrived by upload: what :meth:`Ingest._keep` needs of it."""

    association_id: int
    data: bytes

    def encoded_parts(self) -> tuple[bytes]:
        return (self.data,)
