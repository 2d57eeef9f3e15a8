"""The catalog's record types (see :mod:`dicomflow.cod.catalog`, which exports them)."""

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit


class Level(StrEnum):
    """The query/retrieve levels (PS3.4 C.3): what one search result is."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


@dataclass(frozen=True)
class Scope:
    """Restricts a search to one study, or one series of a study (QIDO-RS paths)."""

    study_uid: str | None = None
    series_uid: str | None = None


EVERYWHERE = Scope()  # no restriction


@dataclass(frozen=True)
class LocatedInstance:
    """An archived instance, with what a retrieval needs to read and send it."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str


def redacted(location: str) -> str:
    """``location`` without the password it may hold."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
