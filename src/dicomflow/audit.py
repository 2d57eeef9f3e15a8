"""The audit trail: who connected, as whom, over what, and what was exchanged.

One JSON object per line in a file of its own (default
``{data_directory}/audit/audit.jsonl``, folder 0700, files 0600), rotated by size
(``audit_log_max_bytes``, ``audit_log_backups`` old files kept). The records are
typed: :class:`AssociationAudit` for each DICOM association received or sent (and
each connection refused before one), :class:`HttpAudit` for each dashboard and
DICOMweb request.

A record names peers, AE titles, user names, TLS, counts and Study Instance UIDs,
and nothing else about patients: no patient name, ID or birth date, and no query
string (a QIDO-RS query carries ``PatientName``/``PatientID``). Values a peer chose
are cut to :data:`MAX_TEXT` characters and JSON-escaped (``ensure_ascii``), so a
hostile AE title (NUL bytes, quotes, line breaks, 10 kB) stays inside one line.

The records go to the logger ``dicomflow.audit`` (not propagated to the node's
log); :func:`configure` gives it its file. Until then :func:`emit` does nothing.
"""

import json
import logging
import logging.handlers
import os
import socket
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from dicomflow.logs import make_private_folders

LOGGER_NAME = "dicomflow.audit"
MAX_TEXT = 256  # characters kept of any value a peer or client chose
MAX_STUDY_UIDS = 100  # Study Instance UIDs kept per association (the count goes on)
DEFAULT_MAX_BYTES = 10 << 20
DEFAULT_BACKUPS = 10

logger = logging.getLogger(LOGGER_NAME)
logger.propagate = False
logger.setLevel(logging.INFO)


class Direction(StrEnum):
    RECEIVED = "received"
    SENT = "sent"


@dataclass
class AssociationAudit:
    """One DICOM association (or a connection refused before one), from its start.

    ``result``: ``released``, ``aborted ...``, ``closed ...``, ``rejected: <reason>``
    or ``refused: <reason>`` (a connection refused before any association).
    ``study_uids`` holds at most :data:`MAX_STUDY_UIDS` of the stored instances'
    studies; ``studies_truncated`` says more were seen.
    """

    direction: Direction
    peer_ip: str
    peer_port: int
    calling_ae_title: str = ""
    called_ae_title: str = ""
    identity: str = ""
    tls: str = ""
    peer_certificate: str = ""
    started: float = field(default_factory=time.time)
    ended: float | None = None
    stored: int = 0
    sent: int = 0
    refused: int = 0
    failed: int = 0
    study_uids: set[str] = field(default_factory=set)
    studies_truncated: bool = False
    result: str = ""

    def count_received(self, stored: bool, study_uid: str | None) -> None:
        """Count one C-STORE answered with success (``stored``) or not; note its study."""
        if not stored:
            self.refused += 1
            return
        self.stored += 1
        if study_uid and study_uid not in self.study_uids:
            if len(self.study_uids) < MAX_STUDY_UIDS:
                self.study_uids.add(study_uid)
            else:
                self.studies_truncated = True

    def count_sent(self, sent: bool) -> None:
        if sent:
            self.sent += 1
        else:
            self.failed += 1

    def finish(self, result: str) -> None:
        """Set the result (the first one given wins) and the end; write the record
        (once)."""
        if self.ended is not None:
            return
        self.result = self.result or result
        self.ended = time.time()
        emit(self)


@dataclass
class HttpAudit:
    """One dashboard or DICOMweb request: ``path`` without its query string."""

    client_ip: str
    user: str
    method: str
    path: str
    status: int
    tls: bool
    started: float
    duration_ms: float
    stored: int = 0


Record = AssociationAudit | HttpAudit


def as_json(record: Record) -> str:
    """The record as one line of JSON (strings cut and escaped, times in ISO 8601 UTC)."""
    values: dict[str, Any] = {"type": _kind(record)}
    for item in fields(record):  # not asdict(): it deep-copies every value
        values[item.name] = _plain(item.name, getattr(record, item.name))
    return json.dumps(values, ensure_ascii=True, separators=(",", ":"))


def _kind(record: Record) -> str:
    return "association" if isinstance(record, AssociationAudit) else "http"


def _plain(name: str, value: Any) -> Any:
    if name in ("started", "ended"):
        return None if value is None else timestamp(value)
    if isinstance(value, set):
        return sorted(_cut(item) for item in value)
    if isinstance(value, str):  # StrEnum too
        return _cut(str(value))
    if isinstance(value, float):
        return round(value, 3)
    return value


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "..."


def timestamp(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 UTC with milliseconds."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds * 1000) % 1000:03d}Z"


def enabled() -> bool:
    """Whether the audit log is configured (records are written)."""
    return bool(logger.handlers)


def emit(record: Record) -> None:
    """Write ``record`` if the audit log is configured; never raises (an audit failure
    is reported by the logging module and must not end an association)."""
    if not logger.handlers:
        return
    try:
        logger.info(as_json(record))
    except Exception:  # a record that cannot be written must not break the exchange
        logging.getLogger(__name__ + ".errors").exception("an audit record was lost")


def refused(ip: str, port: int, reason: str) -> None:
    """Record a connection refused before any association (IP not allowed, TLS failed)."""
    record = AssociationAudit(Direction.RECEIVED, ip, port)
    record.finish(f"refused: {reason}")


def peer_port(connection: socket.socket) -> int:
    """The peer's port of a connected socket, 0 if it is gone."""
    try:
        return int(connection.getpeername()[1])
    except (OSError, IndexError, TypeError, ValueError):
        return 0


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A size-rotated file whose every generation is readable by this user only."""

    def _open(self) -> Any:
        stream = super()._open()
        os.chmod(self.baseFilename, 0o600)
        return stream


def configure(
    path: Path, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
) -> None:
    """Write the audit records of this process to ``path`` (one audit log per process:
    the last call wins; the same file again keeps its handler).

    Raises:
        OSError: the folder or the file cannot be made.
    """
    path = path.absolute()
    current = logger.handlers[0] if logger.handlers else None
    if (
        isinstance(current, _PrivateRotatingFileHandler)
        and current.baseFilename == str(path)
        and (current.maxBytes, current.backupCount) == (max_bytes, backups)
    ):
        return
    make_private_folders(path.parent)
    handler = _PrivateRotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    close()
    logger.addHandler(handler)


def close() -> None:
    """Stop writing audit records (until the next :func:`configure`)."""
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
