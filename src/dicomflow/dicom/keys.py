"""Safe on-disk keys derived from DICOM values.

No raw DICOM value ever becomes part of a path. A value is turned into a key
by hashing it (so ``"../x"``, ``"/etc"``, ``""``, NUL bytes and 64 kB strings
all give a fixed-length hex name), and UIDs are validated against the DICOM UID
grammar before they are used anywhere.
"""

import hashlib
import re

from dicomflow.errors import InvalidKeyError

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_MAX_LENGTH = 64
_LENIENT_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
KEY_LENGTH = 32
_KEY_PATTERN = re.compile(rf"^[0-9a-f]{{{KEY_LENGTH}}}$")
MISSING = b"dicomflow-none"


def value_key(value: object) -> str:
    """Return a fixed-length hex key for any DICOM value (the value is hashed).

    ``None`` (a missing attribute) and the empty string get distinct keys, so a
    patient without a PatientID is kept apart from one whose PatientID is empty.
    """
    if value is None:  # hashed with its own personalisation: no value can collide with it
        return hashlib.blake2b(digest_size=KEY_LENGTH // 2, person=MISSING).hexdigest()
    text = str(value).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=KEY_LENGTH // 2).hexdigest()


def is_key(name: str) -> bool:
    """Tell whether ``name`` has the shape of a key made by :func:`value_key`."""
    return bool(_KEY_PATTERN.match(name))


def is_valid_uid(uid: object) -> bool:
    """Tell whether ``uid`` follows the DICOM UID grammar (PS3.5 9.1)."""
    return isinstance(uid, str) and 0 < len(uid) <= UID_MAX_LENGTH and bool(UID_PATTERN.match(uid))


def uid_key(uid: object, name: str = "SOPInstanceUID") -> str:
    """Return ``uid`` unchanged if it is a valid DICOM UID, else raise.

    Raises:
        InvalidKeyError: naming the attribute and (a shortened form of) the value.
    """
    if not is_valid_uid(uid):
        raise InvalidKeyError(f'{name} "{shorten(uid)}" is not a valid DICOM UID.')
    return str(uid)


def instance_file_name(uid: object) -> str:
    """Return the spool file name of an instance: its UID (digits and dots only) + ``.dcm``.

    Leading zeros, which some devices emit, are tolerated; anything else that is
    not a UID (empty, ``../x``, over 64 characters, NUL bytes) raises.
    """
    return f"{uid_name(uid)}.dcm"


def uid_name(uid: object, name: str = "SOPInstanceUID") -> str:
    """Return ``uid`` for use as a file or folder name: digits and dots only, at most 64
    characters (leading zeros tolerated, as in :func:`instance_file_name`).

    Raises:
        InvalidKeyError: naming the attribute ``name`` and (a shortened form of) the value.
    """
    if not (isinstance(uid, str) and 0 < len(uid) <= UID_MAX_LENGTH and _LENIENT_UID.match(uid)):
        raise InvalidKeyError(f'{name} "{shorten(uid)}" is not a valid DICOM UID.')
    return uid


def shorten(value: object, limit: int = 40) -> str:
    """Return a printable, bounded form of a value for error messages."""
    text = repr(value) if not isinstance(value, str) else value
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"
