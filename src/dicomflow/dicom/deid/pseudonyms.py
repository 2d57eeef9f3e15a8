"""Linkable pseudonyms: UIDs, patient IDs and date offsets from a keyed HMAC.

Every replacement is ``HMAC-SHA256(key, purpose NUL value)``: the same original gets the
same pseudonym on every run and every node holding the same key, another key gives
unrelated pseudonyms, and without the key a pseudonym cannot be reversed or recomputed
from a guessed original. The key lives in a file readable by its owner only (mode 0600);
it is never written into a dataset, metadata or log.

- UIDs become ``2.25.<128 bits as a decimal>`` (PS3.5 B.2), at most 44 characters.
- Patient IDs become 16 base-32 characters.
- Dates move back by a per-patient whole number of days, between 365 and 3,650, so the
  intervals within one patient's record stay true.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from dicomflow.errors import DeidConfigError

__all__ = [
    "KEY_BYTES",
    "Pseudonymizer",
    "create_key_file",
    "load_key_file",
]

KEY_BYTES = 32
MIN_OFFSET_DAYS = 365
MAX_OFFSET_DAYS = 3650


def create_key_file(path: Path) -> Path:
    """Write a new random key to ``path`` (mode 0600, fsynced); never overwrites one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise DeidConfigError(f"deid_key_file: {path} exists already; not replaced") from None
    except OSError as error:
        raise DeidConfigError(f"deid_key_file: cannot create {path}: {error}") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def load_key_file(path: Path, create: bool = False) -> bytes:
    """Read the key in ``path``; refuse a file that others may read.

    With ``create``, a missing file is made first (the node's default key).
    Raises DeidConfigError naming ``deid_key_file``.
    """
    if create and not path.exists():
        with contextlib.suppress(DeidConfigError):  # another process made it meanwhile
            create_key_file(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise DeidConfigError(f"deid_key_file: cannot read {path}: {error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise DeidConfigError(
            f"deid_key_file: {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            "it must be 0600: chmod 600 it, and check who has read it"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise DeidConfigError(
            f"deid_key_file: {path} must hold at least {KEY_BYTES} bytes as hexadecimal "
            "(make one with `dicomflow deid keygen PATH`)"
        )
    return key


class Pseudonymizer:
    """Keyed, deterministic replacements for identifying values."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise DeidConfigError(f"deid_key_file: a key has at least {KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(<key withheld>)"

    def _digest(self, purpose: bytes, value: str) -> bytes:
        message = purpose + b"\0" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """The pseudonymous UID of ``original`` (``2.25.`` and 128 bits in decimal)."""
        original = original.strip("\0 ")  # no cache: an HMAC costs ~4 µs, a cache memory
        number = int.from_bytes(self._digest(b"uid", original)[:16], "big")
        return f"2.25.{number}"

    def patient_id(self, original: str, issuer: str = "") -> str:
        """The pseudonymous PatientID (16 characters A-Z, 2-7)."""
        digest = self._digest(b"patient", f"{issuer.strip()}\0{original.strip()}")
        return base64.b32encode(digest[:10]).decode("ascii")

    def token(self, purpose: str, original: str, length: int = 16) -> str:
        """A pseudonymous text for any other identifying value (upper-case base 32)."""
        digest = self._digest(b"token:" + purpose.encode(), original)
        return base64.b32encode(digest[:20]).decode("ascii")[: max(1, min(length, 32))]

    def date_offset_days(self, patient_pseudonym: str) -> int:
        """Days (negative) every date of this patient moves by."""
        number = int.from_bytes(self._digest(b"date", patient_pseudonym)[:8], "big")
        return -(MIN_OFFSET_DAYS + number % (MAX_OFFSET_DAYS - MIN_OFFSET_DAYS + 1))

    @staticmethod
    def shift_date(value: str, days: int) -> str | None:
        """``YYYYMMDD`` (or a DT starting with it) moved by ``days``; None if not a date."""
        text = value.strip()
        try:
            moved = dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8])) + dt.timedelta(days)
        except (ValueError, OverflowError):
            return None
        if len(text) < 8 or not text[:8].isdigit():
            return None
        return moved.strftime("%Y%m%d") + text[8:]
