"""User identities (PS3.7 D.3.3.7): what a peer presents in its A-ASSOCIATE-RQ, and
whether the node lets it in.

A requestor may put a User Identity sub-item (0x58) in its A-ASSOCIATE-RQ: a
username (type 1), a username and passcode (2), a Kerberos ticket (3), a SAML
assertion (4) or a JSON Web Token (5), and whether it wants a positive
response (a 0x59 sub-item in the A-ASSOCIATE-AC). :mod:`dicomflow.net.pdu`
packs and parses the sub-items; this module holds the typed record
(:class:`UserIdentity`) and the decision (:class:`IdentityPolicy`), which both
receivers ask before they accept an association.

Without an identities file every identity is accepted and only recorded (a
positive response is sent for types 1 and 2 when asked for: the node cannot
answer a Kerberos, SAML or JWT request with a server response). With one
(``user_identities_file``), a username (and passcode) must match one of its
users, and the calling AE title must be one that user may come from; the node
cannot verify Kerberos, SAML or JWT identities, so those are rejected. With
``require_user_identity`` an association presenting no identity is rejected.

The identities file is TOML, one table per user::

    [users."alice"]
    password_hash = "scrypt$16384$8$1$<salt, base64>$<hash, base64>"
    allowed_ae_titles = ["CT1", "MR2"]  # the calling AE titles; empty or left out: any

    [users."robot"]  # no password_hash: a username-only identity (type 1, or 2 with any passcode)

A ``password_hash`` is ``hashlib.scrypt`` of the UTF-8 password:
``scrypt$N$r$p$salt$hash`` (N a power of two, salt and hash in standard base64);
``dicomflow identity add`` writes it. Hashes are compared in constant time, and
an unknown username costs one scrypt as a wrong password does.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
import stat
import threading
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from dicomflow.address import valid_ae_title
from dicomflow.durable import write_then_rename
from dicomflow.errors import UserIdentitiesFileError
from dicomflow.logs import escaped

logger = logging.getLogger(__name__)

SCHEME = "scrypt"
DEFAULT_N, DEFAULT_R, DEFAULT_P = 1 << 14, 8, 1  # 16 MiB and ~50 ms per check
MAXIMUM_N, MAXIMUM_R, MAXIMUM_P = 1 << 20, 32, 16
MAXIMUM_HASH_MEMORY = 128 << 20  # 128 * r * N bytes per check
CONCURRENT_CHECKS = 4
"""Checks at once: each takes 128 * r * N bytes, and a peer needs no slot to ask for one."""
_checks = threading.BoundedSemaphore(CONCURRENT_CHECKS)
SALT_BYTES = 16
LOGGED_NAME_CHARACTERS = 64
RESPONSE_KINDS = frozenset({1, 2})  # the kinds a positive response is sent for (zero length)


class IdentityKind(IntEnum):
    """User-Identity-Type (PS3.7 D.3.3.7.1)."""

    USERNAME = 1
    USERNAME_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


@dataclass(frozen=True)
class UserIdentity:
    """A User Identity sub-item of an A-ASSOCIATE-RQ.

    ``primary`` is the username (UTF-8) for types 1 and 2; for the others it is the
    ticket, assertion or token, held as Latin-1 text so that it round-trips byte for
    byte. ``secondary`` is the passcode (type 2 only). Neither a passcode nor a token
    appears in the record's repr, so logging one shows only its kind and username.
    """

    kind: IdentityKind
    primary: str
    secondary: bytes = b""
    positive_response_requested: bool = True

    @classmethod
    def of(
        cls, username: str, password: str | None = None, *, positive_response: bool = True
    ) -> "UserIdentity":
        """A username identity, with a passcode when ``password`` is given (even empty)."""
        if password is None:
            return cls(IdentityKind.USERNAME, username, b"", positive_response)
        secret = password.encode("utf-8")
        return cls(IdentityKind.USERNAME_PASSCODE, username, secret, positive_response)

    @property
    def has_username(self) -> bool:
        return self.kind in (IdentityKind.USERNAME, IdentityKind.USERNAME_PASSCODE)

    @property
    def name(self) -> str:
        """The username; a token's kind in brackets (the token itself is a credential)."""
        return self.primary if self.has_username else f"[{self.kind.name.lower()}]"

    def primary_bytes(self) -> bytes:
        return self.primary.encode("utf-8" if self.has_username else "latin-1")

    def __repr__(self) -> str:
        return f"UserIdentity(kind={self.kind.name}, name={self.name!r})"


def primary_text(kind: IdentityKind, data: bytes) -> str:
    """The primary field as :attr:`UserIdentity.primary` holds it."""
    if kind in (IdentityKind.USERNAME, IdentityKind.USERNAME_PASSCODE):
        return data.decode("utf-8", "replace")
    return data.decode("latin-1")


def shown(name: str) -> str:
    """A username fit for a log line: quoted, escaped, at most 64 characters of it."""
    if len(name) <= LOGGED_NAME_CHARACTERS:
        return escaped(repr(name))
    cut = name[:LOGGED_NAME_CHARACTERS]
    return f"{escaped(repr(cut))}... ({len(name)} characters)"


# -- password hashes -------------------------------------------------------------------


@dataclass(frozen=True)
class PasswordHash:
    """A scrypt password hash, ``scrypt$N$r$p$salt$hash``."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes = field(repr=False)

    @classmethod
    def make(cls, password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R) -> "PasswordHash":
        salt = os.urandom(SALT_BYTES)
        return cls(n, r, DEFAULT_P, salt, _scrypt(password.encode("utf-8"), salt, n, r, DEFAULT_P))

    @classmethod
    def parse(cls, text: str) -> "PasswordHash":
        """Raise ``ValueError`` saying what is wrong with ``text``."""
        parts = text.split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError("not of the form scrypt$N$r$p$salt$hash")
        try:
            n, r, p = (int(part) for part in parts[1:4])
            salt, digest = (base64.b64decode(part, validate=True) for part in parts[4:])
        except (ValueError, binascii.Error):
            raise ValueError("N, r, p must be integers and salt, hash base64") from None
        power_of_two = 2 <= n <= MAXIMUM_N and not n & (n - 1)
        if not power_of_two or not 0 < r <= MAXIMUM_R or not 0 < p <= MAXIMUM_P:
            raise ValueError(f"N must be a power of two up to {MAXIMUM_N}, r 1-32, p 1-16")
        if 128 * r * n > MAXIMUM_HASH_MEMORY:
            raise ValueError(f"128 * r * N must be at most {MAXIMUM_HASH_MEMORY} bytes")
        if not 8 <= len(salt) <= 64 or not 16 <= len(digest) <= 64:
            raise ValueError("the salt must be 8-64 bytes and the hash 16-64")
        return cls(n, r, p, salt, digest)

    def matches(self, password: bytes) -> bool:
        """Whether ``password`` hashes to this digest (compared in constant time)."""
        with _checks:
            candidate = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)

    def __str__(self) -> str:
        encode = base64.b64encode
        salt, digest = encode(self.salt).decode(), encode(self.digest).decode()
        return f"{SCHEME}${self.n}${self.r}${self.p}${salt}${digest}"


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, length: int = 32) -> bytes:
    memory = 128 * r * n * (p + 1) + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=length)


@functools.cache
def _decoy() -> PasswordHash:
    """A hash to check an unknown user's passcode against, so that it takes as long."""
    return PasswordHash.make("")


# -- the identities file -----------------------------------------------------------------


@dataclass(frozen=True)
class KnownUser:
    """One user of the identities file."""

    name: str
    password_hash: PasswordHash | None
    allowed_ae_titles: frozenset[str] = frozenset()

    def allows(self, calling_ae_title: str) -> bool:
        return not self.allowed_ae_titles or calling_ae_title.strip() in self.allowed_ae_titles


@dataclass(frozen=True)
class Identities:
    """The users of an identities file, by name."""

    path: Path
    users: Mapping[str, KnownUser]

    @classmethod
    def load(cls, path: Path) -> "Identities":
        """Raise :class:`UserIdentitiesFileError` (one line naming the file and the field)."""
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _file_error(path, "", exc.strerror or str(exc)) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise _file_error(path, "", f"not TOML: {exc}") from None
        _warn_if_readable(path)
        return cls(path, _users(path, document))


def _users(path: Path, document: dict[str, Any]) -> dict[str, KnownUser]:
    unknown = sorted(set(document) - {"users"})
    if unknown:
        raise _file_error(path, unknown[0], "unknown key (only [users.NAME] tables)")
    tables = document.get("users", {})
    if not isinstance(tables, dict):
        raise _file_error(path, "users", "must be a table of [users.NAME] tables")
    return {name: _user(path, name, table) for name, table in tables.items()}


def _user(path: Path, name: str, table: Any) -> KnownUser:
    where = f"users.{name}"
    if not name or not name.isprintable():
        raise _file_error(path, where, "a username must be printable and not empty")
    if not isinstance(table, dict):
        raise _file_error(path, where, "must be a table")
    unknown = sorted(set(table) - {"password_hash", "allowed_ae_titles"})
    if unknown:
        raise _file_error(path, f"{where}.{unknown[0]}", "unknown key")
    return KnownUser(name, _hash(path, where, table), _titles(path, where, table))


def _hash(path: Path, where: str, table: dict[str, Any]) -> PasswordHash | None:
    text = table.get("password_hash")
    if text is None:
        return None
    if not isinstance(text, str):
        raise _file_error(path, f"{where}.password_hash", "must be a string")
    try:
        return PasswordHash.parse(text)
    except ValueError as exc:
        raise _file_error(path, f"{where}.password_hash", str(exc)) from None


def _titles(path: Path, where: str, table: dict[str, Any]) -> frozenset[str]:
    titles = table.get("allowed_ae_titles", [])
    if not isinstance(titles, list) or not all(valid_ae_title(t) for t in titles):
        raise _file_error(
            path, f"{where}.allowed_ae_titles", "must be a list of AE titles (1-16 characters)"
        )
    return frozenset(title.strip() for title in titles)


def _file_error(path: Path, where: str, why: str) -> UserIdentitiesFileError:
    field_ = f", {escaped(where)}" if where else ""
    return UserIdentitiesFileError(
        f'User identities file "{path}" (user_identities_file){field_}: {escaped(why)}.'
    )


def _warn_if_readable(path: Path) -> None:
    """Password hashes can be attacked offline: the file should be the node's alone."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("user identities file %s is readable by others (chmod 600 it)", path)


def save(identities: Identities) -> None:
    """Write ``identities`` to their file (mode 0600), replacing it whole."""
    write_then_rename(identities.path, format_identities(identities.users.values()).encode())


def format_identities(users: Iterable[KnownUser]) -> str:
    """The TOML text of an identities file holding ``users``."""
    tables = []
    for user in sorted(users, key=lambda user: user.name):
        lines = [f"[users.{_toml_string(user.name)}]"]
        if user.password_hash is not None:
            lines.append(f"password_hash = {_toml_string(str(user.password_hash))}")
        titles = ", ".join(_toml_string(title) for title in sorted(user.allowed_ae_titles))
        lines.append(f"allowed_ae_titles = [{titles}]")
        tables.append("\n".join(lines) + "\n")
    return "\n".join(tables)


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (quotes, backslashes, control characters escaped)."""
    escapes = {'"': '\\"', "\\": "\\\\"}
    out = []
    for character in text:
        if character in escapes:
            out.append(escapes[character])
        elif ord(character) < 0x20 or ord(character) == 0x7F:
            out.append(f"\\u{ord(character):04x}")
        else:
            out.append(character)
    return '"' + "".join(out) + '"'


# -- the decision ------------------------------------------------------------------------


class IdentityProblem(StrEnum):
    """Why an identity was not accepted (said in the log line of the rejection)."""

    MISSING = "no user identity, and require_user_identity is on"
    UNKNOWN_USER = "unknown user"
    WRONG_PASSWORD = "wrong password"
    AE_NOT_ALLOWED = "calling AE title not allowed for this user"
    UNVERIFIABLE = "Kerberos, SAML and JWT identities cannot be verified"


@dataclass(frozen=True)
class Verdict:
    """What a receiver does with an association's identity."""

    name: str  # the presented (or verified) username, "" for none
    problem: IdentityProblem | None = None
    response: bytes | None = None  # the server response of a 0x59 sub-item; None: no 0x59

    @property
    def accepted(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class IdentityPolicy:
    """Which identities a receiver accepts: every one without ``identities``; with it, its
    users only; with ``required``, an association presenting none is rejected."""

    identities: Identities | None = None
    required: bool = False

    def check(self, identity: UserIdentity | None, calling_ae_title: str) -> Verdict:
        if identity is None:
            return Verdict("", IdentityProblem.MISSING if self.required else None)
        name = identity.name
        problem = self._problem(identity, calling_ae_title)
        if problem is not None:
            return Verdict(name, problem)
        wanted = identity.positive_response_requested and identity.kind in RESPONSE_KINDS
        return Verdict(name, None, b"" if wanted else None)

    def _problem(self, identity: UserIdentity, calling_ae_title: str) -> IdentityProblem | None:
        if self.identities is None:
            return None
        if not identity.has_username:
            return IdentityProblem.UNVERIFIABLE
        user = self.identities.users.get(identity.primary)
        if user is None or "\ufffd" in identity.primary:  # not UTF-8: matches no one
            if identity.kind == IdentityKind.USERNAME_PASSCODE:
                _decoy().matches(identity.secondary)
            return IdentityProblem.UNKNOWN_USER
        if user.password_hash is not None:
            given = identity.kind == IdentityKind.USERNAME_PASSCODE
            if not given or not user.password_hash.matches(identity.secondary):
                return IdentityProblem.WRONG_PASSWORD
        if not user.allows(calling_ae_title):
            return IdentityProblem.AE_NOT_ALLOWED
        return None


def load_policy(path: Path | None, required: bool) -> IdentityPolicy:
    """The policy of the settings ``user_identities_file`` and ``require_user_identity``."""
    return IdentityPolicy(Identities.load(path) if path is not None else None, required)
