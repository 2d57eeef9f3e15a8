"""The optional re-identification table: pseudonym → original, for an administrator.

A SQLite file created with mode 0600 (and refused if its mode lets anyone else read it),
so only the account that runs the node, and root, can read it. Nothing serves it over
HTTP or DICOM: an administrator reads it on the machine with
``dicomflow deid reidentify PSEUDONYM --table FILE``.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple

from dicomflow.errors import DeidConfigError

__all__ = ["IdentityKind", "Reidentification", "ReidentificationTable"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pseudonyms (
    pseudonym TEXT NOT NULL,
    kind TEXT NOT NULL,
    original TEXT NOT NULL,
    PRIMARY KEY (pseudonym, kind)
) WITHOUT ROWID
"""


_SEEN_LIMIT = 100_000


class IdentityKind(StrEnum):
    """What a pseudonym stands for."""

    PATIENT = "patient"
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class Reidentification(NamedTuple):
    kind: IdentityKind
    pseudonym: str
    original: str


class ReidentificationTable:
    """Records pseudonyms as they are made; opened by the node or by an administrator."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _create_private(path)
        _check_private(path)
        try:
            self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(_SCHEMA)
        except sqlite3.Error as error:
            message = f"deid_reidentification_table: {path} is not a usable SQLite file: {error}"
            raise DeidConfigError(message) from None
        self._lock = threading.Lock()
        self._seen: set[tuple[str, IdentityKind]] = set()

    def record(self, entries: list[Reidentification]) -> None:
        """Store ``entries`` (each pseudonym once; later duplicates are ignored)."""
        new = [e for e in entries if (e.pseudonym, e.kind) not in self._seen]
        if not new:
            return
        with self._lock:
            self._connection.executemany(
                "INSERT OR IGNORE INTO pseudonyms VALUES (?, ?, ?)",
                [(e.pseudonym, e.kind.value, e.original) for e in new],
            )
            if len(self._seen) >= _SEEN_LIMIT:
                self._seen.clear()  # a cache of recent writes: memory stays bounded
            self._seen.update((e.pseudonym, e.kind) for e in new)

    def lookup(self, pseudonym: str) -> list[Reidentification]:
        """Every original recorded for ``pseudonym``."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT kind, pseudonym, original FROM pseudonyms WHERE pseudonym = ?",
                (pseudonym.strip(),),
            ).fetchall()
        return [Reidentification(IdentityKind(kind), p, o) for kind, p, o in rows]

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def _create_private(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        message = f"deid_reidentification_table: cannot create {path}: {error}"
        raise DeidConfigError(message) from None
    os.close(descriptor)


def _check_private(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise DeidConfigError(f"deid_reidentification_table: {path}: {error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DeidConfigError(
            f"deid_reidentification_table: {path} is readable by others "
            f"(mode {stat.S_IMODE(mode):o}); it must be 0600"
        )
