"""The de-identified archive (``archive_deid``): what an archive job needs, and what it does.

With ``archive_deid`` on, every instance goes through the node's
:class:`~dicomflow.dicom.deid.Deidentifier` inside the archive job (the worker process)
before it is appended, so the archive holds de-identified instances only: tar members,
metadata, URIs, thumbnails and catalog rows carry the pseudonymous UIDs, and a series is
filed under its pseudonymous study and series UIDs (the same on every node with the key).

The job is given :class:`ArchiveDeid` -- the profile, options and the *path* of the key
file -- never the key: it reads the key file itself (which must exist and be 0600 on the
worker's machine at that path). An instance refused by de-identification (burned-in
annotation without a pixel-cleaning rule) or failing it is not archived; the job archives
the rest and then fails, naming each one by SOP class and reason, so its inputs are kept
as those of any failed job (see :func:`dicomflow.engine.series_archive.archive_series`).

On a Redis queue, whose workers read a staging prefix of the datastore, the node
de-identifies the instances itself before staging them (:func:`stage_deidentified`), so
that the datastore never holds an original byte, not even while the job waits; the job
is told its inputs are de-identified already (:func:`staged_groups`): de-identifying a
pseudonym again would give another one. Such a worker needs no key file.
"""

import io
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]
from pydicom import Dataset, dcmread
from pydicom.uid import UID

from dicomflow.cod import Instance
from dicomflow.dicom.deid import Deidentifier
from dicomflow.dicom.keys import is_valid_uid
from dicomflow.engine.deidentification import check_deid_settings, deidentifier_from_settings
from dicomflow.errors import DeidConfigError, DeidError
from dicomflow.settings import NodeSettings

__all__ = [
    "ArchiveDeid",
    "Gathered",
    "archive_deid",
    "deidentified_groups",
    "stage_deidentified",
    "staged_groups",
]

logger = logging.getLogger(__name__)

SeriesKey = tuple[str, str]


@dataclass(frozen=True)
class ArchiveDeid:
    """The de-identification settings an archive job carries (JSON-able; no key)."""

    profile: str
    options: tuple[str, ...]
    safe_private: tuple[str, ...]
    pixel_cleaning: tuple[str, ...]
    key_file: str
    reidentification_table: str | None = None

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> "ArchiveDeid":
        """The node's ``deid_*`` settings, the key file's path made explicit."""
        table = settings.deid_reidentification_table
        return cls(
            settings.deid_profile,
            tuple(settings.deid_options),
            tuple(settings.deid_safe_private),
            tuple(settings.deid_pixel_cleaning),
            str(settings.deid_key_path()),
            None if table is None else str(table),
        )

    def to_kwargs(self) -> dict[str, Any]:
        return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(self).items()}

    @classmethod
    def from_kwargs(cls, value: object) -> "ArchiveDeid":
        """Read the JSON form back; raises DeidConfigError if it is malformed."""
        try:
            if not isinstance(value, dict):
                raise TypeError(type(value).__name__)
            lists = ("options", "safe_private", "pixel_cleaning")
            fields = {**value, **{name: tuple(map(str, value[name])) for name in lists}}
            return cls(**fields)
        except (TypeError, KeyError, ValueError) as error:
            raise DeidConfigError(f"archive_deid: malformed job settings ({error})") from None

    def settings(self) -> NodeSettings:
        """These values as node settings (no environment read: a job's own view)."""
        table = self.reidentification_table
        return NodeSettings.model_construct(
            deid_profile=self.profile,
            deid_options=list(self.options),
            deid_safe_private=list(self.safe_private),
            deid_pixel_cleaning=list(self.pixel_cleaning),
            deid_key_file=Path(self.key_file),
            deid_reidentification_table=None if table is None else Path(table),
        )

    def deidentifier(self) -> Deidentifier:
        """The process's de-identifier (the key read from ``key_file``, never created)."""
        return deidentifier_from_settings(self.settings())


def archive_deid(settings: NodeSettings) -> ArchiveDeid | None:
    """What the node's archive jobs carry with ``archive_deid`` on (None when off); the
    settings are checked first (the default key file made), so that a wrong option or a
    key file others can read stops the node's start, naming the setting."""
    if not settings.archive_deid:
        return None
    check_deid_settings(settings)
    return ArchiveDeid.from_settings(settings)


@dataclass
class Gathered:
    """An archive job's instances by (study, series) -- pseudonymous ones if
    ``deidentified`` -- and the files de-identification refused, with why (SOP class and
    reason: no identifier)."""

    groups: dict[SeriesKey, list[Instance]]
    deidentified: bool = False
    refused: list[tuple[str, str]] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    refused_before: list[str] = field(default_factory=list)

    def refusals(self) -> list[str]:
        """The refusals (those the node made when staging first), each file named by its
        position (its name may be an original UID)."""
        uris = {uri: number for number, uri in enumerate(self.uris, 1)}
        found = [f"instance {uris.get(uri, '?')} ({why})" for uri, why in self.refused]
        return [*self.refused_before, *found]


def deidentified_groups(uris: list[str], deidentifier: Deidentifier) -> Gathered:
    """De-identify every file of ``uris`` in memory, grouped by its pseudonymous series.

    A refused or failing file is left out and listed in ``refused``; an instance's
    recorded path is its pseudonymous name, never the file's.
    """
    result = Gathered(defaultdict(list), deidentified=True, uris=list(uris))
    for uri in uris:
        with fsspec.open(uri, "rb") as file:
            original = file.read()
        try:
            data, identity = deidentifier.deidentify_bytes(original)
        except DeidError as error:  # DeidRefusedError too
            result.refused.append((uri, _refusal(original, error)))
            logger.error("not archived: %s", result.refusals()[-1])
            continue
        name = f"deidentified/{identity.sop_instance_uid}.dcm"
        key = (identity.study_uid, identity.series_uid)
        result.groups[key].append(Instance.from_bytes(data, name))
    return result


def stage_deidentified(folder: Path, url: str, deidentifier: Deidentifier) -> list[str]:
    """Write the de-identified form of every ``*.dcm`` instance of ``folder`` under
    ``url``, named by its position in the folder (no identifier, original or not, in a
    path); an instance refused or failing is not written. Returns the refusals, each
    instance named by that position."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.makedirs(root, exist_ok=True)
    refusals = []
    for number, path in enumerate(sorted(folder.glob("*.dcm")), 1):
        original = path.read_bytes()
        try:
            data, _ = deidentifier.deidentify_bytes(original)
        except DeidError as error:  # DeidRefusedError too
            refusals.append(f"instance {number} ({_refusal(original, error)})")
            logger.error("not staged for the archive: %s", refusals[-1])
            continue
        fs.pipe_file(f"{root}/{number:06d}.dcm", data)
    return refusals


def staged_groups(uris: list[str], refused: list[str]) -> Gathered:
    """The instances :func:`stage_deidentified` wrote, grouped by their (pseudonymous)
    series, as they are; ``refused`` are the refusals the node made. A file that does
    not say it is de-identified (PatientIdentityRemoved YES) is refused, not archived."""
    result = Gathered(defaultdict(list), deidentified=True, uris=list(uris))
    result.refused_before = list(refused)
    for uri in uris:
        with fsspec.open(uri, "rb") as file:
            data = file.read()
        header = _header(data)
        if header is None or header.get("PatientIdentityRemoved") != "YES":
            result.refused.append((uri, "staged as de-identified, but it is not"))
            logger.error("not archived: %s", result.refusals()[-1])
            continue
        key = (str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
        name = f"deidentified/{header.SOPInstanceUID}.dcm"
        result.groups[key].append(Instance.from_bytes(data, name))
    return result


def _header(data: bytes) -> Dataset | None:
    """The identifying header of a staged file (None if unreadable or incomplete)."""
    tags = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientIdentityRemoved"]
    try:
        header = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=tags)
    except Exception:  # pydicom raises many types on malformed input
        return None
    return header if all(is_valid_uid(header.get(tag)) for tag in tags[:3]) else None


def _refusal(original: bytes, error: DeidError) -> str:
    """Why ``original`` was refused, starting with its SOP class (no identifier)."""
    why = str(error)
    sop_class = _sop_class(original)
    return why if sop_class in why else f"{sop_class}: {why}"


def _sop_class(data: bytes) -> str:
    """The SOP class of a Part-10 file, by name where known (never an identifier)."""
    try:
        header = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID"])
        uid = UID(str(header.get("SOPClassUID", "") or "").strip())
    except Exception:  # unreadable: the refusal says why
        return "SOP class unknown"
    return uid.name if uid.name != str(uid) else f"SOP class {uid or 'unknown'}"
