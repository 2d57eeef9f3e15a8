"""Appending one instance to a series: what it means (the checks before an append).

An instance is a *duplicate* (same SOPInstanceUID, same crc32c: decided from
the hints alone when they give both, so nothing is fetched), a *conflict*
(same UID, different crc32c: the stored copy is kept), *new*, or an *error*
(unreadable, hint mismatch, invalid UID, other study or series).
"""

import enum
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.errors import InvalidDicomError

from dicomflow.cod.checksum import checksum
from dicomflow.cod.instance import Instance
from dicomflow.cod.metadata import BULK_DATA_THRESHOLD
from dicomflow.dicom.keys import is_valid_uid, shorten, uid_key
from dicomflow.errors import CODInstanceError


class AppendOutcome(enum.StrEnum):
    """What appending did with one instance."""

    NEW = "new"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass
class AppendResult:
    """What ``CODObject.append`` did with each instance.

    It unpacks as ``new, same, conflict, errors`` (the original library's tuple);
    ``same`` and ``conflict`` are also names of ``duplicates`` and ``conflicts``.
    """

    new: list[Instance] = field(default_factory=list)
    duplicates: list[Instance] = field(default_factory=list)
    conflicts: list[Instance] = field(default_factory=list)
    errors: list[tuple[Instance, Exception]] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[Any]]:
        return iter((self.new, self.duplicates, self.conflicts, self.errors))

    @property
    def same(self) -> list[Instance]:
        """The duplicates (same SOPInstanceUID, same crc32c)."""
        return self.duplicates

    @property
    def conflict(self) -> list[Instance]:
        """The conflicts (same SOPInstanceUID, different crc32c)."""
        return self.conflicts

    def add(self, outcome: AppendOutcome, instance: Instance) -> None:
        """Record ``instance`` under ``outcome``."""
        {
            AppendOutcome.NEW: self.new,
            AppendOutcome.DUPLICATE: self.duplicates,
            AppendOutcome.CONFLICT: self.conflicts,
        }[outcome].append(instance)


@dataclass(frozen=True)
class Fetched:
    """An instance's bytes, parsed dataset, validated UID and crc32c."""

    data: bytes
    dataset: Dataset
    sop_instance_uid: str
    crc32c: str


def hinted_duplicate(instance: Instance, known_crc32c: Callable[[str], str | None]) -> bool:
    """Tell from the hints alone (no fetch) whether the instance is already stored.

    ``known_crc32c`` returns the crc32c of a SOPInstanceUID of the series (None if absent).
    """
    uid, crc = instance.hints.instance_uid, instance.hints.crc32c
    if uid is None or crc is None:
        return False
    if not is_valid_uid(uid):
        raise CODInstanceError(f'Instance {instance!r}: hinted UID "{shorten(uid)}" is invalid.')
    return known_crc32c(uid) == crc


def fetch(instance: Instance, study_uid: str, series_uid: str) -> Fetched:
    """Fetch, parse and check an instance against its hints and the series UIDs."""
    data = instance.open().getvalue()
    try:
        # parsed from the fetched bytes (one fetch); long values, bulk data in the
        # metadata, stay unread
        ds = pydicom.dcmread(io.BytesIO(data), defer_size=BULK_DATA_THRESHOLD)
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise CODInstanceError(f"Instance {instance!r} is not readable DICOM: {exc}.") from exc
    uid = uid_key(_attribute(ds, "SOPInstanceUID"), "SOPInstanceUID")
    found = [str(_attribute(ds, keyword)) for keyword in ("StudyInstanceUID", "SeriesInstanceUID")]
    crc32c = checksum(data)
    instance._remember([*found, uid], len(data), crc32c)
    instance.hints.validate(len(data), crc32c, uid, found[1], found[0])
    for keyword, value, expected in zip(
        ("StudyInstanceUID", "SeriesInstanceUID"), found, (study_uid, series_uid), strict=True
    ):
        if value != expected:
            raise CODInstanceError(
                f'Instance {instance!r} has {keyword} "{shorten(value)}"; expected "{expected}" '
                "(it does not belong to this series)."
            )
    return Fetched(data, ds, uid, crc32c)


BYTES_PER_GB = 2**30


def check_sizes(
    instance: Instance, size: int, series_bytes: int, max_instance_gb: float, max_series_gb: float
) -> None:
    """Raise CODInstanceError if the instance, or the series with it, is over its limit (GiB)."""
    if size > max_instance_gb * BYTES_PER_GB:
        raise CODInstanceError(
            f"Instance {instance!r} has {size} bytes; max_instance_size is {max_instance_gb} GiB."
        )
    if series_bytes + size > max_series_gb * BYTES_PER_GB:
        raise CODInstanceError(
            f"Instance {instance!r} would make the series {series_bytes + size} bytes; "
            f"max_series_size is {max_series_gb} GiB."
        )


def _attribute(ds: Dataset, keyword: str) -> Any:
    """``ds.get(keyword)`` for a UID attribute, read straight from a plain raw value."""
    element: DataElement | RawDataElement | None = ds.get_item(keyword) if keyword in ds else None
    if isinstance(element, RawDataElement) and element.VR in ("UI", None):
        data = element.value
        if data and data.isascii() and b"\\" not in data:
            value = data.decode("ascii").rstrip("\x00 ")
            if value:
                return value
    return ds.get(keyword)
