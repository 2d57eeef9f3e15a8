"""The values D, C and U put in place of the originals, for one dataset.

- D: a dummy of the VR. Text becomes a keyed token of the original (the same value
  gets the same token, like a pseudonym); dates 19000101, times 000000, numbers 0.
  An empty value gets a dummy too (D is a non-zero length value).
- U: the keyed ``2.25`` pseudonym of each UID (the original under Retain UIDs).
- C: dates move by the patient's offset (times stay: whole days move); text loses the
  record's identifiers: the names and numbers of the patient and of the people of the
  record word by word, its places as whole values, and calendar dates.
- PatientID at any depth: this patient's pseudonym, or another patient's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from dicomflow.dicom.deid.profile import Action, DeidProfile, Option
from dicomflow.dicom.deid.pseudonyms import Pseudonymizer

__all__ = ["Replacements", "identifying_pattern"]

_SPACES = re.compile(r"[ \t]{2,}")  # what a removed word leaves; line breaks stay
_DATE_VRS = {"DA", "DT"}
_TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "CS", "AE", "UR", "PN"}
_MAX_LENGTH = {"SH": 16, "CS": 16, "AE": 16, "LO": 64, "PN": 64}
_CONTENT_DATE = 0x00080023
# The values Clean takes out of free text: the patient's identifiers and the names of
# the people and places of this record (HIPAA Safe Harbor's names, numbers, addresses).
# Names and numbers go word by word (``Doe`` of ``Doe^John``); places as a whole value,
# since their words (``General``, ``Street``) are common ones.
_IDENTIFYING_NAMES = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "AccessionNumber",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AdmissionID",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "ResponsiblePerson",
)
_IDENTIFYING_PLACES = ("PatientAddress", "InstitutionName", "InstitutionAddress")
# Calendar dates written in text (2023-01-05, 20230105, 05.01.2023, 1/5/23).
_DATE_IN_TEXT = (
    r"(?<![\d.\-/])(?:\d{8}|\d{4}([-./])\d{2}\1\d{2}|\d{1,2}([./-])\d{1,2}\2\d{2}(?:\d{2})?)"
    r"(?!\d|[.\-/]\d)"
)


class Replacements:
    """The values D, C and U put in place, for one dataset (its patient, its identifiers).

    Its methods with ``(item, value, field, dicom)`` are the functions the deid recipe
    calls (``func:dicomflow_*``); :meth:`inner` serves :mod:`.content`.
    """

    def __init__(
        self,
        pseudonymizer: Pseudonymizer,
        profile: DeidProfile,
        patient: tuple[str, str],
        dataset: Dataset,
    ) -> None:
        self.pseudonymizer = pseudonymizer
        self.keep_uids = Option.RETAIN_UIDS in profile.options
        self.patient, self.original_patient = patient
        self.offset = pseudonymizer.date_offset_days(self.patient)
        self.date_action = profile.actions().get(_CONTENT_DATE, Action.DUMMY)
        self.pattern = identifying_pattern(dataset)

    def patient_id(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        """PatientID at any depth: this patient's pseudonym, or another patient's."""
        return _map_values(field.element, self._patient_id)

    def _patient_id(self, text: Any) -> Any:
        original = str(text).strip()
        if original == self.original_patient:
            return self.patient
        return self.pseudonymizer.patient_id(original)

    def inner(self, element: DataElement, mode: Action) -> None:
        """A value without a row inside a D or C sequence (see :mod:`.content`)."""
        if element.VR in ("DA", "DT", "TM"):
            mode = self.date_action
            if mode is Action.KEEP:
                return
        replace = self._dummy if mode is Action.DUMMY else self._clean
        element.value = _map_values(element, lambda text: replace(element, text))

    def clean_text(self, text: str) -> str:
        """``text`` without the record's identifiers and dates (Clean on free text)."""
        if self.pattern is None:
            return text
        return _SPACES.sub(" ", self.pattern.sub("", text)).strip()

    def uid(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        return _map_values(field.element, self._uid)

    def dummy(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        element: DataElement = field.element
        if element.is_empty and element.VR not in ("SQ", "UI"):
            return self._dummy(element, "")  # D is a non-zero length value, even for an empty one
        return _map_values(element, lambda text: self._dummy(element, text))

    def clean(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        element: DataElement = field.element
        return _map_values(element, lambda text: self._clean(element, text))

    def _uid(self, text: Any) -> Any:
        if not isinstance(text, str) or not text.strip() or self.keep_uids:
            return text
        return self.pseudonymizer.uid(text)

    def _dummy(self, element: DataElement, text: Any) -> Any:
        vr = element.VR
        if vr == "UI":
            return self._uid(text)
        if vr in _DATE_VRS or vr == "TM":
            return {"DA": "19000101", "DT": "19000101000000", "TM": "000000"}[vr]
        if vr in _TEXT_VRS:
            purpose = f"{element.tag:08x}"
            return self.pseudonymizer.token(purpose, str(text), _MAX_LENGTH.get(vr, 16))
        if vr in {"IS", "DS"}:
            return "0"
        if vr in {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}:
            return 0
        if vr in {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}:
            return b"\0\0"
        return text  # SQ: its items are processed by their own rows; AT: not identifying

    def _clean(self, element: DataElement, text: Any) -> Any:
        vr = element.VR
        if vr in _DATE_VRS and isinstance(text, str) and text.strip():
            return Pseudonymizer.shift_date(text, self.offset) or ""
        if vr == "UI":
            return self._uid(text)
        if vr in _TEXT_VRS and isinstance(text, str):
            return self.clean_text(text)
        return text


def _map_values(element: DataElement, function: Callable[[Any], Any]) -> Any:
    value = element.value
    if element.VR == "SQ" or value is None or value == "":
        return value
    if isinstance(value, MultiValue | list):
        return [function(item) for item in value]
    return function(value)


def identifying_pattern(dataset: Dataset) -> re.Pattern[str]:
    """A pattern of the dataset's own identifiers, to clean them out of free text."""
    words: set[str] = set()
    for keyword in _IDENTIFYING_NAMES + _IDENTIFYING_PLACES:
        for value in _strings(dataset.get(keyword)):
            if keyword in _IDENTIFYING_NAMES:
                words.update(w for w in re.split(r"[\^=\s,]+", value) if len(w) >= 2)
            if len(value) >= 2:
                words.add(value)
    birth = str(dataset.get("PatientBirthDate", "") or "").strip()
    if len(birth) == 8 and birth.isdigit():
        words.update({birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}", f"{birth[6:]}.{birth[4:6]}"})
    ordered = sorted(words, key=len, reverse=True)[:200]
    alternatives = [_DATE_IN_TEXT, *(re.escape(w) for w in ordered)]
    return re.compile("|".join(rf"(?<!\w)(?:{a})(?!\w)" for a in alternatives), re.IGNORECASE)


def _strings(value: Any) -> Iterator[str]:
    if value is None:
        return
    if isinstance(value, MultiValue | list):
        for item in value:
            yield str(item).strip()
    else:
        yield str(value).strip()
