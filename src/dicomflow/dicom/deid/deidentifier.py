"""De-identify a dataset: PS3.15 Table E.1-1 applied through pydicom's ``deid`` recipes.

:class:`Deidentifier` turns a :class:`~dicomflow.dicom.deid.profile.DeidProfile` into a
``deid`` recipe once (one line per attribute of Table E.1-1: REMOVE for X, BLANK for Z,
REPLACE with the functions of :mod:`.replacements` for D, C and U, nothing for K) and
runs ``deid``'s parser, which applies it at every depth of nested sequences and in the
file meta. Then it does what a recipe cannot: the values without a row inside D and C
sequences (:mod:`.content`), keyed pseudonyms for the patient, private attributes and
the repeating overlay and curve groups (:mod:`.groups`), new file meta, and the
attributes that say what was done (PatientIdentityRemoved, DeidentificationMethod and
its code sequence, LongitudinalTemporalInformationModified).

An instance that may carry identifying pixels (BurnedInAnnotation YES, or a SOP class
known for burned-in text) is refused with :class:`DeidRefusedError` unless the profile
names pixel-cleaning rules that match it (:mod:`dicomflow.dicom.deid.pixel_cleaning`).
"""

from __future__ import annotations

import functools
import io
import logging
import tempfile
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydicom import Dataset, FileDataset, FileMetaDataset, dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from dicomflow.dicom.deid.content import replace_sequence_contents
from dicomflow.dicom.deid.groups import remove_private, remove_repeating_groups
from dicomflow.dicom.deid.profile import Action, DeidProfile, Option
from dicomflow.dicom.deid.pseudonyms import Pseudonymizer
from dicomflow.dicom.deid.reidentification import (
    IdentityKind,
    Reidentification,
    ReidentificationTable,
)
from dicomflow.dicom.deid.replacements import Replacements
from dicomflow.errors import DeidError, DeidRefusedError

__all__ = ["BURNED_IN_SOP_CLASSES", "DeidIdentity", "Deidentifier", "burned_in_reason"]

log = logging.getLogger(__name__)

# SOP classes whose pixels often carry burned-in text whatever BurnedInAnnotation says.
BURNED_IN_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
}
MAX_SEQUENCE_DEPTH = 100
_SILENT = -6  # below deid's ABORT level: its own messages off
_DEID_LOCK = threading.Lock()  # deid patches FileDataset.__hash__ while it parses
_PATIENT_ID, _ISSUER, _PATIENT_NAME = 0x00100020, 0x00100021, 0x00100010
_IDENTITY_REMOVED, _METHOD, _METHOD_CODES = 0x00120062, 0x00120063, 0x00120064
_LONGITUDINAL = 0x00280303  # LongitudinalTemporalInformationModified


@dataclass(frozen=True)
class DeidIdentity:
    """The pseudonyms an instance gets (UIDs are the originals under Retain UIDs)."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str


def burned_in_reason(dataset: Dataset) -> str | None:
    """Why ``dataset``'s pixels may identify the patient, or None."""
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        return None
    if str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        return "BurnedInAnnotation is YES"
    sop_class = str(dataset.get("SOPClassUID", "")).strip()
    if sop_class in BURNED_IN_SOP_CLASSES:
        return f"{BURNED_IN_SOP_CLASSES[sop_class]} often has burned-in text"
    return None


class Deidentifier:
    """Applies one profile with one key; safe to share between threads of a process."""

    def __init__(
        self,
        profile: DeidProfile,
        pseudonymizer: Pseudonymizer,
        reidentification: ReidentificationTable | None = None,
    ) -> None:
        self.profile = profile
        self.pseudonymizer = pseudonymizer
        self.reidentification = reidentification
        self._actions = profile.actions()
        self._recipe = _recipe(profile)

    def identity(self, dataset: Dataset) -> DeidIdentity:
        """The pseudonyms ``dataset`` will get, without changing it."""
        keep = Option.RETAIN_UIDS in self.profile.options
        uid = (lambda value: value) if keep else self.pseudonymizer.uid

        def mapped(keyword: str) -> str:
            value = dataset.get(keyword, "") or ""
            if isinstance(value, MultiValue | list):
                raise DeidError(f"{keyword} has {len(value)} values; it names one entity")
            text = str(value).strip()
            return uid(text) if text else ""

        return DeidIdentity(
            self._patient(dataset),
            mapped("StudyInstanceUID"),
            mapped("SeriesInstanceUID"),
            mapped("SOPInstanceUID"),
        )

    def deidentify(self, dataset: Dataset) -> DeidIdentity:
        """De-identify ``dataset`` in place; returns its pseudonyms.

        Raises:
            DeidRefusedError: burned-in annotation without a matching pixel-cleaning rule.
            DeidError: the dataset cannot be de-identified (the message says why).
        """
        _check_depth(dataset)
        pixels_cleaned = self._check_pixels(dataset)
        identity = self.identity(dataset)
        originals = _originals(dataset)
        patient = (identity.patient_id, originals[IdentityKind.PATIENT])
        context = Replacements(self.pseudonymizer, self.profile, patient, dataset)
        try:
            self._run_recipe(dataset, context)
            replace_sequence_contents(dataset, self._actions, context.inner)
        except RecursionError:
            raise DeidError("sequences are nested too deeply to de-identify") from None
        except (ValueError, TypeError, KeyError, AttributeError, IndexError, SystemExit) as error:
            message = f"de-identification failed: {type(error).__name__}: {error}"
            raise DeidError(message) from None
        self._finish(dataset, identity, pixels_cleaned, context)
        self._record(originals, identity)
        return identity

    def deidentify_bytes(self, data: bytes) -> tuple[bytes, DeidIdentity]:
        """De-identify a Part-10 file's bytes; same transfer syntax, new file meta."""
        try:
            dataset = dcmread(io.BytesIO(data))
        except Exception as error:  # pydicom raises many types on malformed input
            raise DeidError(f"not a readable DICOM file: {error}") from None
        identity = self.deidentify(dataset)
        buffer = io.BytesIO()
        try:
            dataset.save_as(buffer, enforce_file_format=True)
        except Exception as error:  # pydicom's writer, like its reader, raises many types
            raise DeidError(f"the de-identified instance cannot be written: {error}") from None
        return buffer.getvalue(), identity

    def _check_pixels(self, dataset: Dataset) -> bool:
        reason = burned_in_reason(dataset)
        if reason is None:
            return False
        if not self.profile.pixel_cleaning:
            raise DeidRefusedError(
                f"{reason}: refused, since no pixel-cleaning rule is configured "
                "(setting deid_pixel_cleaning)"
            )
        from dicomflow.dicom.deid.pixel_cleaning import clean_pixels

        clean_pixels(dataset, self.profile.pixel_cleaning, reason)
        return True

    def _run_recipe(self, dataset: Dataset, context: Replacements) -> None:
        from deid.dicom.fields import _get_fields_inner
        from deid.dicom.parser import DicomParser

        with _DEID_LOCK:
            try:
                parser = DicomParser(_hashable(dataset), recipe=self._recipe)
                parser.define("dicomflow_dummy", context.dummy)
                parser.define("dicomflow_uid", context.uid)
                parser.define("dicomflow_clean", context.clean)
                parser.define("dicomflow_patient_id", context.patient_id)
                parser.parse(remove_private=False)
            finally:
                _get_fields_inner.cache_clear()  # it would keep every dataset alive

    def _finish(
        self, dataset: Dataset, identity: DeidIdentity, pixels_cleaned: bool, context: Replacements
    ) -> None:
        # Elements made directly, not by keyword: pydicom's keyword path validates each
        # value again, which costs more than the rest of this step.
        dataset[_PATIENT_ID] = DataElement(_PATIENT_ID, "LO", identity.patient_id)
        dataset[_PATIENT_NAME] = DataElement(_PATIENT_NAME, "PN", identity.patient_id)
        remove_private(dataset, self.profile)
        remove_repeating_groups(dataset, self.profile, context.clean_text)
        dataset[_IDENTITY_REMOVED] = DataElement(_IDENTITY_REMOVED, "CS", "YES")
        dataset[_METHOD] = DataElement(_METHOD, "LO", self.profile.description())
        methods = self.profile.method_codes(pixels_cleaned)
        codes = [_code(code.value, code.meaning) for code in methods]
        dataset[_METHOD_CODES] = DataElement(_METHOD_CODES, "SQ", Sequence(codes))
        dataset[_LONGITUDINAL] = DataElement(_LONGITUDINAL, "CS", _longitudinal(self.profile))
        if getattr(dataset, "file_meta", None) is not None:
            dataset.file_meta = _file_meta(dataset)

    def _record(self, originals: dict[IdentityKind, str], identity: DeidIdentity) -> None:
        if self.reidentification is None:
            return
        pseudonyms = {
            IdentityKind.PATIENT: identity.patient_id,
            IdentityKind.STUDY: identity.study_uid,
            IdentityKind.SERIES: identity.series_uid,
            IdentityKind.INSTANCE: identity.sop_instance_uid,
        }
        self.reidentification.record(
            [
                Reidentification(kind, pseudonyms[kind], original)
                for kind, original in originals.items()
                if original and pseudonyms[kind]
            ]
        )

    def _patient(self, dataset: Dataset) -> str:
        original = str(dataset.get(_PATIENT_ID, DataElement(0, "LO", "")).value or "")
        issuer = str(dataset.get(_ISSUER, DataElement(0, "LO", "")).value or "")
        return self.pseudonymizer.patient_id(original, issuer)


def _originals(dataset: Dataset) -> dict[IdentityKind, str]:
    keywords = {
        IdentityKind.PATIENT: "PatientID",
        IdentityKind.STUDY: "StudyInstanceUID",
        IdentityKind.SERIES: "SeriesInstanceUID",
        IdentityKind.INSTANCE: "SOPInstanceUID",
    }
    return {kind: str(dataset.get(keyword, "") or "").strip() for kind, keyword in keywords.items()}


def _check_depth(dataset: Dataset) -> None:
    """Refuse sequences nested deeper than any IOD needs (deid's walk is quadratic in depth)."""
    stack = [(dataset, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_SEQUENCE_DEPTH:
            raise DeidError(f"sequences are nested more than {MAX_SEQUENCE_DEPTH} deep; refused")
        for element in item.elements():  # raw elements stay raw: only sequences are read
            if _is_sequence(item, element):
                stack.extend((child, depth + 1) for child in item[element.tag].value or ())


def _is_sequence(item: Dataset, element: DataElement | RawDataElement) -> bool:
    if element.VR not in (None, "UN"):
        return element.VR == "SQ"
    try:
        return dictionary_VR(element.tag) == "SQ"
    except KeyError:  # a private or unknown attribute in implicit VR: read it to know
        return item[element.tag].VR == "SQ"


def _hashable(dataset: Dataset) -> Dataset:
    """``dataset`` itself, or a FileDataset sharing its elements (deid hashes what it parses)."""
    if isinstance(dataset, FileDataset):
        return dataset
    meta = dataset.get("file_meta")
    return FileDataset("", dataset, file_meta=meta, preamble=b"\0" * 128)


def _file_meta(dataset: Dataset) -> FileMetaDataset:
    """New file meta for the new file: its SOP class, instance and transfer syntax only.

    The old one named the AE titles and addresses of the sender and receiver, and could
    hold private information (0002,0102); pydicom writes its own implementation UID.
    """
    old, meta = dataset.file_meta, FileMetaDataset()
    for keyword in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"):
        if keyword in old:
            setattr(meta, keyword, old[keyword].value)
    if "SOPInstanceUID" in dataset:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    return meta


def _longitudinal(profile: DeidProfile) -> str:
    if Option.RETAIN_LONGITUDINAL_FULL_DATES in profile.options:
        return "UNMODIFIED"
    if Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in profile.options:
        return "MODIFIED"
    return "REMOVED"


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item[0x00080100] = DataElement(0x00080100, "SH", value)  # CodeValue
    item[0x00080102] = DataElement(0x00080102, "SH", "DCM")  # CodingSchemeDesignator
    item[0x00080104] = DataElement(0x00080104, "LO", meaning)  # CodeMeaning
    return item


@cache
def _recipe(profile: DeidProfile) -> Any:
    """The deid recipe of ``profile`` (built once per profile and process)."""
    return recipe_from_actions(profile.actions())


def _cache_tag_lookup() -> None:
    """Cache deid's keyword → tag lookup, which scans pydicom's whole data dictionary on
    every replaced value (a quarter of deid's time). The dictionary never changes while
    a process runs and deid only reads the answer, so a cache gives the same results."""
    from deid.dicom import parser, tags

    if not hasattr(parser.get_tag, "cache_info"):
        parser.get_tag = functools.lru_cache(maxsize=8192)(tags.get_tag)


def recipe_from_actions(actions: dict[int, Action]) -> Any:
    """A deid recipe applying ``actions`` (tag -> action) at every depth."""
    from deid.config import DeidRecipe
    from deid.logger import bot

    bot.level = _SILENT  # deid prints to stdout; its failures reach us as exceptions
    _cache_tag_lookup()
    lines = ["FORMAT dicom", "", "%header", ""]
    verbs = {
        Action.REMOVE: "REMOVE {tag}",
        Action.ZERO: "BLANK {tag}",
        Action.DUMMY: "REPLACE {tag} func:dicomflow_dummy",
        Action.UID: "REPLACE {tag} func:dicomflow_uid",
        Action.CLEAN: "REPLACE {tag} func:dicomflow_clean",
    }
    for tag, action in sorted(actions.items()):
        if tag == _PATIENT_ID:
            lines.append(f"REPLACE {tag:08X} func:dicomflow_patient_id")
        elif action is not Action.KEEP:
            lines.append(verbs[action].format(tag=f"{tag:08X}"))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "dicomflow.deid"
        path.write_text("\n".join(lines) + "\n")
        return DeidRecipe(deid=str(path), base=False)
