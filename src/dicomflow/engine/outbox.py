"""The outbox: results waiting to reach their DICOM peers.

Each item is a folder ``outbox/{round_id}-{n}/`` with ``destination.json`` and
the Part-10 files to send. Each destination has its own lane (a thread), so a
peer that is down or never answers delays only its own items. A lane sends its
items with retries and exponential backoff; a file is deleted only once the
peer acknowledged it; an item whose peer stays down is retried every
``retry_interval_s`` and after a restart. A destination with ``"tls": true`` is sent
to over DICOM TLS with the node's TLS files (``client_tls``); a failed handshake (an
untrusted certificate, say) is a failed attempt like a peer that refuses: the files stay
and are tried again. A file no retry would send (unreadable,
or compressed for a peer that takes only uncompressed syntaxes and not
decodable) is moved once to ``outbox-unsendable/{item}/`` with the reason in
``reasons.json``. Nothing is dropped.
"""

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dicomflow import metrics
from dicomflow.address import Address
from dicomflow.destinations import FileDestination, OutboxDestination
from dicomflow.dicom.keys import instance_file_name, uid_name
from dicomflow.durable import fsync_directory, write_durably
from dicomflow.net.requestor import send
from dicomflow.tls import TLSFiles

logger = logging.getLogger(__name__)

DESTINATION = "destination.json"
LAST_ERROR = "last-error.json"
REASONS = "reasons.json"
STOP_WAIT_S = 5.0


@dataclass
class Delivery:
    """What one attempt did: the files the peer acknowledged, and the ones no retry to
    it would send, with why."""

    acknowledged: set[Path]
    unsendable: dict[Path, str] = field(default_factory=dict)


Sender = Callable[[Address, list[Path], str], Delivery]


def send_files(
    address: Address, files: list[Path], calling_ae_title: str, tls: TLSFiles | None = None
) -> Delivery:
    """Send ``files`` over one association (with ``tls`` files to an address with
    ``tls``); say which the peer acknowledged."""
    report = send(
        address, files, calling_ae_title=calling_ae_title, tls=tls if address.tls else None
    )
    unsendable = {Path(name): report.failed[name] for name in report.unsendable}
    return Delivery({Path(name) for name in report.sent}, unsendable)


class Outbox:
    """The outbox folder and its lanes, one thread per destination, that empty it."""

    def __init__(
        self,
        root: Path,
        *,
        calling_ae_title: str,
        retries: int = 5,
        backoff_s: float = 2.0,
        retry_interval_s: float = 60.0,
        sender: Sender | None = None,
        on_delivered: Callable[[Path], None] | None = None,
        client_tls: TLSFiles | None = None,
    ) -> None:
        """``client_tls``: the files to send to TLS destinations with (the node's own
        certificate as client identity, its CA certificates as the trusted ones); None:
        no client certificate and the system's trust store. ``sender`` replaces
        :func:`send_files`."""
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.calling_ae_title = calling_ae_title
        self.retries = retries
        self.backoff_s = backoff_s
        self.retry_interval_s = retry_interval_s
        self.unsendable_root = root.with_name(f"{root.name}-unsendable")
        self._sender = sender or partial(send_files, tls=client_tls or TLSFiles())
        self._on_delivered = on_delivered
        self._stop = threading.Event()
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Start a lane for each destination that has items waiting."""
        self._started = True
        self.retry_now()

    def stop(self) -> None:
        """Stop every lane; one in the middle of an attempt is given ``STOP_WAIT_S``."""
        self._stop.set()
        with self._lock:
            lanes = list(self._lanes.values())
        deadline = time.monotonic() + STOP_WAIT_S
        for lane in lanes:
            lane.wake.set()
        for lane in lanes:
            lane.thread.join(timeout=max(deadline - time.monotonic(), 0.0))

    def add(self, name: str, folder: Path, destination: OutboxDestination) -> Path:
        """Move ``folder`` (files to send) into the outbox as item ``name``."""
        item = self.root / name
        (folder / DESTINATION).write_text(json.dumps(destination.to_json(), indent=2))
        os.replace(folder, item)
        fsync_directory(self.root)
        if self._started:
            self._wake_lane(destination.destination.lane())
        return item

    def items(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if (p / DESTINATION).is_file())

    def retry_now(self) -> None:
        """Try every item again without waiting for the retry interval."""
        for key in {_key_of(item) for item in self.items()}:
            self._wake_lane(key)

    def _wake_lane(self, key: str) -> None:
        """Wake the lane of destination ``key``, starting it if it has none."""
        if self._stop.is_set():
            return
        with self._lock:
            lane = self._lanes.get(key)
            if lane is None:  # a new lane begins with a pass over its items
                lane = self._lanes[key] = _Lane(partial(self._run_lane, key), key)
                lane.thread.start()
                return
        lane.wake.set()

    def _run_lane(self, key: str) -> None:
        """Deliver the items of one destination until none is left."""
        lane = self._lanes[key]
        while not self._stop.is_set():
            for item in self._items_for(key):
                if self._stop.is_set():
                    return
                self._deliver_safely(item)
            with self._lock:
                if not self._items_for(key):
                    del self._lanes[key]
                    return
            lane.wake.wait(timeout=self.retry_interval_s)
            lane.wake.clear()

    def _deliver_safely(self, item: Path) -> None:
        try:
            self.deliver(item)
        except FileNotFoundError:  # delivered or removed meanwhile
            pass
        except Exception:  # an unreadable destination.json, say: the lane carries on
            logger.exception("outbox %s: cannot be delivered", item.name)

    def _items_for(self, key: str) -> list[Path]:
        return [item for item in self.items() if _key_of(item) == key]

    def deliver(self, item: Path) -> bool:
        """Send one item with retries; return whether it was delivered completely."""
        destination = read_destination(item)
        address, send = self._sender_for(destination)
        for attempt in range(self.retries + 1):
            remaining = sorted(item.glob("*.dcm"))
            if not remaining:
                break
            if attempt:
                delay = self.backoff_s * 2 ** (attempt - 1)
                if self._stop.wait(delay):
                    return False
                metrics.EXPORT_RETRIES.inc()
            self._attempt(item, address, send, remaining, attempt)
        if any(item.glob("*.dcm")):
            logger.warning("outbox %s: %s still unreachable; kept for later", item.name, address)
            metrics.EXPORTS.labels(outcome="kept").inc()
            return False
        shutil.rmtree(item, ignore_errors=True)
        metrics.EXPORTS.labels(outcome="delivered").inc()
        kind = destination.stage_kind or metrics.KIND_PIPELINE
        metrics.observe_stage(metrics.ACKNOWLEDGED, destination.processed_at, kind=kind)
        logger.info("outbox %s: delivered to %s", item.name, address)
        if self._on_delivered is not None:
            self._on_delivered(item)
        return True

    def _sender_for(self, item: OutboxDestination) -> tuple[str, Callable[[list[Path]], Delivery]]:
        """How an item reaches its destination: C-STORE to a peer, or durable copies into
        a folder. Returns its name and the sender."""
        destination = item.destination
        if isinstance(destination, FileDestination):
            folder = Path(destination.path)
            layout = dict(destination.layout or {})
            return str(folder), lambda files: Delivery(copy_files(folder, files, layout))
        address = Address(
            destination.ip, destination.port, destination.ae_title, tls=destination.tls
        )
        calling = destination.calling_ae_title or self.calling_ae_title
        return destination.describe(), lambda files: self._sender(address, files, calling)

    def _attempt(
        self,
        item: Path,
        address: str,
        send: Callable[[list[Path]], Delivery],
        files: list[Path],
        attempt: int,
    ) -> None:
        started = time.monotonic()
        try:
            delivery = send(files)
        except Exception as exc:
            logger.warning(
                "outbox %s: attempt %d to %s failed: %s", item.name, attempt + 1, address, exc
            )
            metrics.EXPORT_FAILURES.inc()
            _record_error(item, f"{address}: {exc}")
            return
        acknowledged = delivery.acknowledged
        for path in acknowledged:
            path.unlink(missing_ok=True)
        metrics.INSTANCES_EXPORTED.inc(len(acknowledged))
        if delivery.unsendable:
            self._set_aside(item, address, delivery.unsendable)
        if len(acknowledged) < len(files):
            metrics.EXPORT_FAILURES.inc()
            refused = len(files) - len(acknowledged)
            _record_error(item, f"{address}: {refused} of {len(files)} instance(s) not accepted")
        logger.info(
            "outbox %s: %d/%d instance(s) acknowledged by %s in %.2fs",
            item.name,
            len(acknowledged),
            len(files),
            address,
            time.monotonic() - started,
        )

    def _set_aside(self, item: Path, address: str, unsendable: dict[Path, str]) -> None:
        """Move files no retry would send to ``outbox-unsendable/{item}/``, with why."""
        target = self.unsendable_root / item.name
        target.mkdir(parents=True, exist_ok=True)
        reasons_path = target / REASONS
        reasons = json.loads(reasons_path.read_text()) if reasons_path.exists() else {}
        for path, reason in unsendable.items():
            reasons[path.name] = f"{address}: {reason}"
            write_durably(target / f".{REASONS}.part", json.dumps(reasons, indent=2).encode())
            os.replace(target / f".{REASONS}.part", reasons_path)
            os.replace(path, target / path.name)
            logger.error(
                "outbox %s: %s cannot be sent to %s and is set aside in %s: %s",
                item.name,
                path.name,
                address,
                target,
                reason,
            )
        fsync_directory(target)
        metrics.INSTANCES_UNSENDABLE.inc(len(unsendable))

    def resend(self, name: str) -> Path:
        """Try item ``name`` again now, without waiting for the retry interval; return its
        folder. (The outbox thread sends it, so one item is never sent twice at once.)

        Raises:
            KeyError: if ``name`` is not an item waiting in the outbox.
        """
        item = next((path for path in self.items() if path.name == name), None)
        if item is None:
            raise KeyError(f'The outbox has no item "{name}".')
        self._wake_lane(_key_of(item))
        return item


class _Lane:
    """The thread that delivers one destination's items, and the event that wakes it."""

    def __init__(self, target: Callable[[], None], key: str) -> None:
        self.wake = threading.Event()
        self.thread = threading.Thread(target=target, name=f"dicomflow-outbox {key}", daemon=True)


def read_destination(item: Path) -> OutboxDestination:
    """The destination of outbox item ``item``, as any version wrote it.

    Raises:
        OSError: if it cannot be read.
        ValueError: if it is not JSON or describes no destination.
    """
    return OutboxDestination.from_json(json.loads((item / DESTINATION).read_text()))


def _key_of(item: Path) -> str:
    """The item's lane: items with the same destination share one."""
    try:
        return read_destination(item).destination.lane()
    except (OSError, ValueError):
        return f"item {item.name}"  # unreadable: alone in its lane, where deliver() fails


def copy_files(folder: Path, files: list[Path], layout: dict[str, str] | None = None) -> set[Path]:
    """Copy ``files`` durably into ``folder`` (temporary name, fsync, rename, directory
    fsync); return the ones copied. ``layout`` maps a file's name to its path beneath
    ``folder`` (``study/series/instance.dcm``, checked by :func:`layout_path`).

    Raises:
        OSError: if the folder cannot be made or written (the item is retried later).
    """
    targets = {
        path: layout_path(folder, (layout or {}).get(path.name), path.name) for path in files
    }
    for path, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.parent / f".{path.name}.part"
        write_durably(temporary, path.read_bytes())
        os.replace(temporary, target)
    for parent in {target.parent for target in targets.values()}:
        fsync_directory(parent)
        while parent != folder and parent.parent != parent:  # the new folders' entries too
            parent = parent.parent
            fsync_directory(parent)
    logger.info("%d result file(s) written to %s", len(files), folder)
    return set(files)


def layout_path(folder: Path, relative: str | None, name: str) -> Path:
    """``folder/relative`` where ``relative`` is made of UIDs only (``folder/name`` without).

    Raises:
        InvalidKeyError: if a part of ``relative`` is not a UID (``..``, ``/etc``, ...).
    """
    if relative is None:
        return folder / name
    *folders, file_name = relative.split("/")
    parts = [uid_name(part, "a folder of the file layout") for part in folders]
    return folder.joinpath(*parts, instance_file_name(file_name.removesuffix(".dcm")))


def last_error(item: Path) -> dict[str, Any] | None:
    """The last failed attempt of outbox item ``item``: ``{"error", "at"}`` (epoch s)."""
    try:
        data = json.loads((item / LAST_ERROR).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _record_error(item: Path, error: str) -> None:
    """Remember the last failure beside the files (best effort: it is only shown)."""
    temporary = item / f".{LAST_ERROR}.part"
    try:
        temporary.write_text(json.dumps({"error": error[:2000], "at": time.time()}))
        os.replace(temporary, item / LAST_ERROR)
    except OSError as exc:
        logger.debug("outbox %s: cannot record the error: %s", item.name, exc)
