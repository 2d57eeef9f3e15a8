"""Check a de-identified dataset against PS3.15 Table E.1-1, row by row.

The expected action of every attribute comes from the table itself (``profile.table()``
under the selected options), not from the de-identifier under test, so a recipe that
applies a wrong action to any row is caught. The walk pairs the original and the
de-identified dataset element by element, at every depth of nested sequences and in
the file meta, and counts the checks it ran per action.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_files
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Option, SafePrivate
from dicomflow.dicom.deid.profile import Action, table
from dicomflow.dicom.deid.pseudonyms import Pseudonymizer

BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
TEXT_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN", "AE", "UR"}
DUMMY_DATES = {"19000101", "19000101000000", "000000"}
CODES = {
    Option.CLEAN_GRAPHICS: "113103",
    Option.CLEAN_STRUCTURED_CONTENT: "113104",
    Option.CLEAN_DESCRIPTORS: "113105",
    Option.RETAIN_LONGITUDINAL_FULL_DATES: "113106",
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "113107",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "113108",
    Option.RETAIN_DEVICE_IDENTITY: "113109",
    Option.RETAIN_UIDS: "113110",
    Option.RETAIN_SAFE_PRIVATE: "113111",
    Option.RETAIN_INSTITUTION_IDENTITY: "113112",
}


def corpus() -> tuple[list[tuple[str, Dataset]], int]:
    """pydicom's bundled test files that read as DICOM, and how many did not."""
    readable, unreadable = [], 0
    for path in sorted(get_testdata_files()):
        try:
            dataset = dcmread(path)
            list(dataset)  # every top-level element decodes
        except Exception:
            unreadable += 1
            continue
        readable.append((Path(path).name, dataset))
    return readable, unreadable


def expected_actions(options: frozenset[Option]) -> tuple[dict[int, Action], dict[int, str]]:
    """Tag -> action under ``options``, straight from Table E.1-1; and tag -> Basic code."""
    actions, basic = {}, {}
    for entry in table():
        if "x" not in entry.tag:
            actions[int(entry.tag, 16)] = entry.action(options)
            basic[int(entry.tag, 16)] = entry.basic
    return actions, basic


@dataclass
class Conformance:
    """The outcome of checking datasets: checks run per action, and every failure."""

    profile: DeidProfile
    pseudonymizer: Pseudonymizer
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    uid_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.actions, self.basic = expected_actions(self.profile.options)

    def check(self, name: str, original: Dataset, deidentifier: Deidentifier) -> None:
        """De-identify a copy of ``original`` and check every row present in it."""
        result = copy.deepcopy(original)
        deidentifier.deidentify(result)
        _Walk(self, name, original, result).run()


@dataclass
class _Walk:
    owner: Conformance
    name: str
    original: Dataset
    result: Dataset

    def __post_init__(self) -> None:
        pseudonymizer = self.owner.pseudonymizer
        patient = str(self.original.get("PatientID", "") or "")
        issuer = str(self.original.get("IssuerOfPatientID", "") or "")
        self.patient = pseudonymizer.patient_id(patient, issuer)
        self.offset = pseudonymizer.date_offset_days(self.patient)
        self.identifiers = _identifiers(self.original)

    def run(self) -> None:
        self.walk(self.original, self.result, "", None, top=True)
        meta, new_meta = self.original.get("file_meta"), self.result.get("file_meta")
        if meta is not None and new_meta is not None:
            self.walk(meta, new_meta, "meta.", None, top=False)
            sop = str(self.result.get("SOPInstanceUID", ""))
            if sop and str(new_meta.get("MediaStorageSOPInstanceUID", "")) != sop:
                self.fail("file meta", "MediaStorageSOPInstanceUID differs from SOPInstanceUID")
        self.check_written()
        self.check_private_and_repeating(self.result, "")

    def fail(self, path: str, message: str) -> None:
        self.owner.failures.append(f"{self.name} {path}: {message}")

    def walk(
        self, original: Dataset, result: Dataset, path: str, inherited: Action | None, top: bool
    ) -> None:
        """Check each element of ``original`` against its row (or its sequence's action)."""
        for element in original:
            tag = int(element.tag)
            if element.tag.is_private or _is_repeating(element.tag.group):
                continue
            where = f"{path}{element.keyword or f'{tag:08X}'}"
            new = result.get(element.tag)
            action = self.owner.actions.get(tag)
            if action is not None:
                self.owner.counts[action.value] += 1
                self.check_row(element, new, action, where, top)
            elif inherited is not None and element.VR != "SQ":
                self.check_inherited(element, new, inherited, where)
            if element.VR == "SQ" and new is not None and new.VR == "SQ":
                self.walk_items(element, new, action, inherited, where)

    def walk_items(
        self,
        element: DataElement,
        new: DataElement,
        action: Action | None,
        inherited: Action | None,
        where: str,
    ) -> None:
        if action in (Action.DUMMY, Action.CLEAN):
            inherited = action
        elif action is not None:
            inherited = None  # K or U: the items' own rows apply
        items, new_items = list(element.value or ()), list(new.value or ())
        if action is not Action.ZERO and len(items) != len(new_items):
            self.fail(where, f"{len(items)} items became {len(new_items)}")
            return
        for index, (item, new_item) in enumerate(zip(items, new_items, strict=False)):
            self.walk(item, new_item, f"{where}[{index}].", inherited, top=False)

    def check_row(
        self, element: DataElement, new: DataElement | None, action: Action, where: str, top: bool
    ) -> None:
        tag = int(element.tag)
        if tag == 0x00100020 and top:
            return self.expect(new is not None and new.value == self.patient, where, "pseudonym")
        if tag == 0x00100010 and top:
            return self.expect(new is not None and str(new.value) == self.patient, where, "name")
        sop = str(self.result.get("SOPInstanceUID", ""))
        if tag == 0x00020003 and sop and new is not None:  # follows the instance (PS3.10)
            return self.expect(new.value == sop, where, "not the instance's SOPInstanceUID")
        if action is Action.CLEAN and element.VR in BINARY_VRS:
            action = Action(_resolved(self.owner.basic[tag]))  # binary values cannot be cleaned
        check = {
            Action.REMOVE: self.check_removed,
            Action.ZERO: self.check_zero,
            Action.DUMMY: self.check_dummy,
            Action.KEEP: self.check_kept,
            Action.CLEAN: self.check_clean,
            Action.UID: self.check_uid,
        }[action]
        check(element, new, where)
        return None

    def expect(self, condition: bool, where: str, message: str) -> None:
        if not condition:
            self.fail(where, message)

    def check_removed(self, element: DataElement, new: DataElement | None, where: str) -> None:
        self.expect(new is None, where, f"X row still present: {_short(new)}")

    def check_zero(self, element: DataElement, new: DataElement | None, where: str) -> None:
        if new is None:
            basic = self.owner.basic[int(element.tag)]
            return self.expect("X" in basic, where, "Z row removed")
        return self.expect(new.is_empty, where, f"Z row not empty: {_short(new)}")

    def check_dummy(self, element: DataElement, new: DataElement | None, where: str) -> None:
        if new is None:
            return self.fail(where, "D row removed")
        if element.VR == "SQ":
            return None  # items: checked against their own rows and the inherited D
        if element.VR == "UI":
            return self.check_uid(element, new, where)
        if new.is_empty:
            return self.fail(where, "D row empty")
        same = _values(new) == _values(element)
        dummy = all(v in DUMMY_DATES or v in {"0", "b'\\x00\\x00'"} for v in _values(new))
        return self.expect(not same or dummy, where, f"D row unchanged: {_short(new)}")

    def check_kept(self, element: DataElement, new: DataElement | None, where: str) -> None:
        if new is None:
            return self.fail(where, "K row removed")
        if element.VR == "SQ":
            same = len(new.value or ()) == len(element.value or ())
            return self.expect(same, where, "K sequence changed its items")
        return self.expect(_values(new) == _values(element), where, f"K changed: {_short(new)}")

    def check_uid(self, element: DataElement, new: DataElement | None, where: str) -> None:
        if new is None:
            return self.fail(where, "U row removed")
        if element.VR == "SQ":
            return None  # X/Z/U*: the items' UIDs are checked by their own rows
        if Option.RETAIN_UIDS in self.owner.profile.options:
            return self.check_kept(element, new, where)
        olds, news = _values(element), _values(new)
        if len(olds) != len(news):
            return self.fail(where, f"{len(olds)} UIDs became {len(news)}")
        for old, value in zip(olds, news, strict=True):
            old = old.strip("\0 ")
            if not old:
                continue
            self.expect(value == self.owner.pseudonymizer.uid(old), where, f"U: {value}")
            previous = self.owner.uid_map.setdefault(old, value)
            self.expect(previous == value, where, f"{old} became {previous} and {value}")
        return None

    def check_clean(self, element: DataElement, new: DataElement | None, where: str) -> None:
        if new is None:
            return self.fail(where, "C row removed")
        if element.VR == "SQ":
            return None
        if element.VR in ("DA", "DT"):
            return self.check_shifted(element, new, where)
        if element.VR in TEXT_VRS:
            return self.check_cleaned_text(element, new, where)
        return self.check_kept(element, new, where)  # TM (days move, times stay), numbers

    def check_shifted(self, element: DataElement, new: DataElement, where: str) -> None:
        for old, value in zip(_values(element), _values(new), strict=False):
            moved = Pseudonymizer.shift_date(old, self.offset) if old.strip() else old.strip()
            self.expect(value.strip() == (moved or ""), where, f"C date {old} became {value}")

    def check_cleaned_text(self, element: DataElement, new: DataElement, where: str) -> None:
        for old, value in zip(_values(element), _values(new), strict=False):
            left = [w for w in self.identifiers if _contains(value, w)]
            self.expect(not left, where, f"C text still holds the patient's {left[:2]}")
            added = set(_words(value)) - set(_words(old))
            self.expect(not added, where, f"C text {old!r} -> {value!r}: not only removals")
            if _words(old) and not any(_contains(old, w) for w in self.identifiers):
                self.expect(bool(_words(value)), where, f"C text {old!r} emptied")

    def check_inherited(
        self, element: DataElement, new: DataElement | None, mode: Action, where: str
    ) -> None:
        """A value without a row of its own inside a D or C sequence."""
        if element.VR not in TEXT_VRS | {"DA", "DT"} or element.is_empty or new is None:
            return
        self.owner.counts[f"{mode.value} (in sequence)"] += 1
        if mode is Action.CLEAN:
            self.check_cleaned_text(element, new, where)
        elif element.VR in TEXT_VRS:
            changed = _values(new) != _values(element)
            self.expect(changed, where, f"value in a D sequence kept: {_short(new)}")

    def check_written(self) -> None:
        result, profile = self.result, self.owner.profile
        self.expect(result.get("PatientIdentityRemoved") == "YES", "", "PatientIdentityRemoved")
        self.expect(
            result.get("DeidentificationMethod") == profile.description(),
            "",
            "DeidentificationMethod",
        )
        codes = [item.CodeValue for item in result.get("DeidentificationMethodCodeSequence", [])]
        wanted = ["113100", *sorted(CODES[o] for o in profile.options)]
        self.expect(sorted(codes) == sorted(wanted), "", f"method codes {codes} != {wanted}")
        schemes = {
            item.CodingSchemeDesignator for item in result.DeidentificationMethodCodeSequence
        }
        self.expect(schemes == {"DCM"}, "", f"coding schemes {schemes}")
        options = profile.options
        longitudinal = (
            "UNMODIFIED"
            if Option.RETAIN_LONGITUDINAL_FULL_DATES in options
            else "MODIFIED"
            if Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in options
            else "REMOVED"
        )
        value = result.get("LongitudinalTemporalInformationModified")
        self.expect(value == longitudinal, "", f"LongitudinalTemporalInformationModified {value}")

    def check_private_and_repeating(self, dataset: Dataset, path: str) -> None:
        safe = self.owner.profile.safe_private
        for element in dataset:
            where = f"{path}{element.keyword or f'{int(element.tag):08X}'}"
            if element.tag.is_private:
                self.owner.counts["private"] += 1
                self.expect(_is_safe(dataset, element, safe), where, "private attribute kept")
            group = element.tag.group
            if 0x5000 <= group <= 0x50FF and group % 2 == 0:
                self.fail(where, "curve kept")
            if 0x6000 <= group <= 0x60FF and group % 2 == 0:
                self.owner.counts["overlay"] += 1
                graphics = Option.CLEAN_GRAPHICS in self.owner.profile.options
                self.expect(graphics, where, "overlay kept without clean_graphics")
            if element.VR == "SQ":
                for index, item in enumerate(element.value or ()):
                    self.check_private_and_repeating(item, f"{where}[{index}].")


def _is_safe(dataset: Dataset, element: DataElement, safe: tuple[SafePrivate, ...]) -> bool:
    tag = element.tag
    if tag.element <= 0xFF:
        name = str(element.value).strip()
        return any(s.creator == name and s.group == tag.group for s in safe)
    creator = dataset.get((tag.group << 16) | (tag.element >> 8))
    name = str(creator.value).strip() if creator is not None else ""
    return any(
        s.creator == name and s.group == tag.group and s.element == tag.element & 0xFF for s in safe
    )


def _identifiers(dataset: Dataset) -> list[str]:
    """The patient's own identifiers that Clean must take out of free text."""
    words: set[str] = set()
    for keyword in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthName"):
        for value in _values_of(dataset.data_element(keyword) if keyword in dataset else None):
            words.update(w for w in re.split(r"[\^=\s,]+", value) if len(w) >= 3)
            if len(value.strip()) >= 3:
                words.add(value.strip())
    birth = str(dataset.get("PatientBirthDate", "") or "").strip()
    if len(birth) == 8 and birth.isdigit():
        words.add(birth)
    return sorted(words)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _contains(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE) is not None


def _values_of(element: DataElement | None) -> list[str]:
    return _values(element) if element is not None else []


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None:
        return []
    if isinstance(value, MultiValue | list):
        return [str(v) for v in value]
    return [str(value)]


def _short(element: DataElement | None) -> str:
    return "absent" if element is None else repr(element.value)[:60]


def _is_repeating(group: int) -> bool:
    return (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF) and group % 2 == 0


def _resolved(basic: str) -> str:
    return {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U"}.get(basic, basic)


def keyword(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"
