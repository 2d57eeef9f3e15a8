"""The outbox: results waiting to reach their DICOM peers.

Each item is a folder ``outbox/{round_id}-{n}/`` with ``destination.json`` and
the Part-10 files to send. The exporter sends them with retries and
exponential backoff; a file is deleted only once the peer acknowledged it; an
item whose peer stays down is retried every ``retry_interval_s`` and after a
restart. Nothing is dropped.
"""

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from dicomflow import metrics
from dicomflow.net.address import Address
from dicomflow.net.scu import send
from dicomflow.node.spool import fsync_directory, write_durably

logger = logging.getLogger(__name__)

DESTINATION = "destination.json"
LAST_ERROR = "last-error.json"
Sender = Callable[[Address, list[Path], str], set[Path]]


def send_files(address: Address, files: list[Path], calling_ae_title: str) -> set[Path]:
    """Send ``files`` over one association; return the ones the peer acknowledged."""
    report = send(address, files, calling_ae_title=calling_ae_title)
    return {Path(name) for name in report.sent}


class Outbox:
    """The outbox folder and the thread that empties it."""

    def __init__(
        self,
        root: Path,
        *,
        calling_ae_title: str,
        retries: int = 5,
        backoff_s: float = 2.0,
        retry_interval_s: float = 60.0,
        sender: Sender = send_files,
        on_delivered: Callable[[Path], None] | None = None,
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.calling_ae_title = calling_ae_title
        self.retries = retries
        self.backoff_s = backoff_s
        self.retry_interval_s = retry_interval_s
        self._sender = sender
        self._on_delivered = on_delivered
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dicomflow-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def add(self, name: str, folder: Path, destination: dict[str, Any]) -> Path:
        """Move ``folder`` (files to send) into the outbox as item ``name``."""
        item = self.root / name
        (folder / DESTINATION).write_text(json.dumps(destination, indent=2))
        os.replace(folder, item)
        fsync_directory(self.root)
        self._wake.set()
        return item

    def items(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if (p / DESTINATION).is_file())

    def retry_now(self) -> None:
        """Try every item again without waiting for the retry interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            for item in self.items():
                if self._stop.is_set():
                    return
                self.deliver(item)
            self._wake.wait(timeout=self.retry_interval_s)
            self._wake.clear()

    def deliver(self, item: Path) -> bool:
        """Send one item with retries; return whether it was delivered completely."""
        destination = json.loads((item / DESTINATION).read_text())
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
        kind = destination.get("stage_kind", metrics.KIND_PIPELINE)
        metrics.observe_stage(metrics.ACKNOWLEDGED, destination.get("processed_at"), kind=kind)
        logger.info("outbox %s: delivered to %s", item.name, address)
        if self._on_delivered is not None:
            self._on_delivered(item)
        return True

    def _sender_for(
        self, destination: dict[str, Any]
    ) -> tuple[str, Callable[[list[Path]], set[Path]]]:
        """How an item reaches its destination: C-STORE to a peer, or (``"kind":
        "file"``) durable copies into a folder. Returns its name and the sender."""
        if destination.get("kind") == "file":
            folder = Path(destination["path"])
            return str(folder), partial(copy_files, folder)
        address = Address(destination["ip"], destination["port"], destination["ae_title"])
        calling = destination.get("calling_ae_title") or self.calling_ae_title
        return str(address), lambda files: self._sender(address, files, calling)

    def _attempt(
        self,
        item: Path,
        address: str,
        send: Callable[[list[Path]], set[Path]],
        files: list[Path],
        attempt: int,
    ) -> None:
        started = time.monotonic()
        try:
            acknowledged = send(files)
        except Exception as exc:
            logger.warning(
                "outbox %s: attempt %d to %s failed: %s", item.name, attempt + 1, address, exc
            )
            metrics.EXPORT_FAILURES.inc()
            _record_error(item, f"{address}: {exc}")
            return
        for path in acknowledged:
            path.unlink(missing_ok=True)
        metrics.INSTANCES_EXPORTED.inc(len(acknowledged))
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

    def resend(self, name: str) -> Path:
        """Try item ``name`` again now, without waiting for the retry interval; return its
        folder. (The outbox thread sends it, so one item is never sent twice at once.)

        Raises:
            KeyError: if ``name`` is not an item waiting in the outbox.
        """
        item = next((path for path in self.items() if path.name == name), None)
        if item is None:
            raise KeyError(f'The outbox has no item "{name}".')
        self._wake.set()
        return item


def copy_files(folder: Path, files: list[Path]) -> set[Path]:
    """Copy ``files`` durably into ``folder`` (temporary name, fsync, rename, directory
    fsync); return the ones copied.

    Raises:
        OSError: if the folder cannot be made or written (the item is retried later).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        temporary = folder / f".{path.name}.part"
        write_durably(temporary, path.read_bytes())
        os.replace(temporary, folder / path.name)
    fsync_directory(folder)
    logger.info("%d result file(s) written to %s", len(files), folder)
    return set(files)


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
