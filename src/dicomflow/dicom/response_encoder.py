"""C-FIND response identifiers encoded straight from the catalog's DICOM JSON.

Building a pydicom :class:`~pydicom.Dataset` per match (``Dataset.from_json``), trimming
it to the keys asked for and encoding it costs about a millisecond an answer; a query
matching every study of a large archive answers tens of thousands. A
:class:`ResponsePlan` does the per-query work once (the identifier's tags in order, their
headers, which come from the match and which are fixed) and encodes each match with the
few value representations a C-FIND answer carries: text (SH, LO, ST, LT, UC, UT, PN from
its Alphabetic/Ideographic/Phonetic groups), ASCII strings (AE, AS, CS, DA, DT, TM, UI,
UR), number strings (IS, DS, written as pydicom writes them) and binary numbers (US, SS,
UL, SL, FL, FD). Anything else (a sequence, inline binary, a value of an unexpected
type, a value too long for its length field) makes :meth:`FindAnswer.encoded` return
None: the caller then encodes :meth:`FindAnswer.dataset` with pydicom, as before.

The bytes are those pydicom writes for the answer
:func:`~dicomflow.dicom.query_identifier.response_identifier` builds, trimmed to the
identifier's elements (the keys, QueryRetrieveLevel as asked, SpecificCharacterSet
``ISO_IR 192`` when any text is not ASCII, else the identifier's): same VRs, order,
padding (UI with NUL, the rest with a space) and lengths.
"""

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import DS, EXPLICIT_VR_LENGTH_32, IS

from dicomflow.dicom.matching import DicomJson
from dicomflow.dicom.query_identifier import (
    INSTANCE_AVAILABILITY,
    NOT_KEYS,
    QUERY_RETRIEVE_LEVEL,
    RETRIEVE_AE_TITLE,
    SPECIFIC_CHARACTER_SET,
    UTF8,
    response_identifier,
)
from dicomflow.errors import UnencodableAnswer

TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
"""Written in the answer's character set (UTF-8 when it says ``ISO_IR 192``)."""
ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
NUMBER_STRING_VRS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "IS": (int, IS),
    "DS": (float, DS),
}
"""How pydicom reads a JSON number (to a Python number first), then holds it."""
BINARY_VRS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
SINGLE_VALUED_VRS = frozenset({"ST", "LT", "UT", "UR"})
"""A backslash is part of their value, not a separator."""
ENCODED_VRS = TEXT_VRS | ASCII_VRS | set(NUMBER_STRING_VRS) | set(BINARY_VRS)
MAX_SHORT_LENGTH = 0xFFFF


class Source(Enum):
    """Where an answer element's value comes from."""

    MATCH = "match"  # the catalog's DICOM JSON of the match
    FIXED = "fixed"  # the same for every match of the query
    CHARSET = "charset"  # SpecificCharacterSet: UTF-8 if any text is not ASCII


@dataclass(frozen=True, slots=True)
class Slot:
    """One element of every answer of a query: its tag (as an int and as a DICOM JSON
    key), the VR it is sent with when empty, and its fixed value if it has one."""

    tag: int
    key: str
    vr: str
    source: Source
    fixed: tuple[str, list[Any]] | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """An element of one answer, its values as text (binary VRs: numbers)."""

    tag: int
    vr: str
    values: list[Any]


class ResponsePlan:
    """The answers of one C-FIND: built once from the identifier, then
    :meth:`answer` per match (``level``: the identifier's, checked; ``ae_title``:
    the node's, as RetrieveAETitle)."""

    def __init__(self, identifier: Dataset, level: str, ae_title: str) -> None:
        self.identifier = identifier
        self.level = level
        self.ae_title = ae_title
        self.slots = _slots(identifier, ae_title)

    def answer(self, result: DicomJson) -> "FindAnswer":
        return FindAnswer(self, result)

    def encoded(self, result: DicomJson, implicit: bool) -> bytes:
        """The answer to ``result`` in implicit or explicit VR little endian.

        Raises:
            UnencodableAnswer: a value outside what this encoder writes.
        """
        fields = [_field(slot, result) for slot in self.slots]
        non_ascii = any(_non_ascii(field_) for field_ in fields)
        encoding = "utf_8" if non_ascii else "ascii"
        parts = []
        for slot, field_ in zip(self.slots, fields, strict=True):
            if slot.source is Source.CHARSET:
                if non_ascii:
                    field_ = Field(field_.tag, "CS", [UTF8])
                elif slot.fixed is None:
                    continue  # not asked for, and not needed
            parts.append(_element(field_, encoding, implicit))
        return b"".join(parts)


@dataclass(frozen=True, slots=True)
class FindAnswer:
    """One match of a C-FIND: encoded when sent (:meth:`encoded`, None when pydicom has
    to), or as a dataset (:meth:`dataset`) for a receiver that sends datasets."""

    plan: ResponsePlan
    result: DicomJson

    def encoded(self, implicit: bool) -> bytes | None:
        try:
            return self.plan.encoded(self.result, implicit)
        except UnencodableAnswer:
            return None

    def dataset(self) -> Dataset:
        plan = self.plan
        return response_identifier(plan.identifier, plan.level, self.result, plan.ae_title)


def _slots(identifier: Dataset, ae_title: str) -> list[Slot]:
    """The answer's elements in tag order: the identifier's, and SpecificCharacterSet
    for when an answer needs it. (A sequence or another VR not written here is found
    when a match is encoded: its answers are pydicom's.)"""
    slots = []
    for tag in sorted(map(int, identifier.keys())):
        try:
            slots.append(_slot(identifier, tag, str(identifier[tag].VR), ae_title))
        except Exception:  # an undecodable request element: pydicom answers it (as UN)
            slots.append(Slot(tag, f"{tag:08X}", "UN", Source.FIXED))
    if SPECIFIC_CHARACTER_SET not in identifier:
        slots.insert(0, Slot(SPECIFIC_CHARACTER_SET, "", "CS", Source.CHARSET))
    return slots


def _slot(identifier: Dataset, tag: int, vr: str, ae_title: str) -> Slot:
    key = f"{tag:08X}"
    if tag == QUERY_RETRIEVE_LEVEL:
        return Slot(tag, key, "CS", Source.FIXED, ("CS", _values(identifier[tag].value)))
    if tag == RETRIEVE_AE_TITLE:
        return Slot(tag, key, "AE", Source.FIXED, ("AE", [ae_title]))
    if tag == INSTANCE_AVAILABILITY:
        return Slot(tag, key, "CS", Source.FIXED, ("CS", ["ONLINE"]))
    if tag == SPECIFIC_CHARACTER_SET:
        fixed = (vr, _values(identifier[tag].value))
        return Slot(tag, key, vr, Source.CHARSET, fixed)
    private, group_length = (tag >> 16) % 2 == 1, tag & 0xFFFF == 0
    if private or group_length or tag in NOT_KEYS:
        return Slot(tag, key, vr, Source.FIXED, None)  # sent empty, as the peer sent it
    return Slot(tag, key, vr, Source.MATCH)


def _values(value: Any) -> list[Any]:
    """An identifier element's value as a list of values."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue | list) else [value]


def _field(slot: Slot, result: DicomJson) -> Field:
    """The element ``slot`` holds for ``result`` (empty where it has none)."""
    if slot.source is Source.MATCH:
        element = result.get(slot.key)
        if not element:
            return Field(slot.tag, _checked_vr(slot.vr), [])
        if not isinstance(element, dict):
            raise UnencodableAnswer("not a DICOM JSON element")
        vr = _checked_vr(str(element.get("vr", "")))
        return Field(slot.tag, vr, _json_values(element, vr))
    if slot.fixed is None:
        return Field(slot.tag, _checked_vr(slot.vr), [])
    vr, values = slot.fixed
    return Field(slot.tag, _checked_vr(vr), values)


def _checked_vr(vr: str) -> str:
    if vr not in ENCODED_VRS:
        raise UnencodableAnswer(vr)
    return vr


def _json_values(element: DicomJson, vr: str) -> list[Any]:
    """A DICOM JSON element's values as pydicom reads them (BulkDataURI: empty)."""
    if "InlineBinary" in element:
        raise UnencodableAnswer("InlineBinary")
    values = element.get("Value")
    if values is None:
        return []
    if not isinstance(values, list) or None in values:
        raise UnencodableAnswer("Value")
    if vr == "PN":
        return [_person_name(value) for value in values]
    return values


def _person_name(value: Any) -> str:
    """A PN value from its groups, as pydicom joins them."""
    if not isinstance(value, dict):
        raise UnencodableAnswer("PN")
    if "Phonetic" in value:
        groups = ["", "", ""]
    elif "Ideographic" in value:
        groups = ["", ""]
    else:
        groups = [""]
    for index, name in enumerate(("Alphabetic", "Ideographic", "Phonetic")):
        if name in value:
            groups[index] = value[name]
    return "=".join(groups)


def _non_ascii(field_: Field) -> bool:
    return field_.vr in TEXT_VRS and any(not value.isascii() for value in field_.values)


IMPLICIT_HEADER = struct.Struct("<HHI")
EXPLICIT_HEADER = struct.Struct("<HH2sH")
EXPLICIT_LONG_HEADER = struct.Struct("<HH2s2xI")
VR_BYTES = {vr: vr.encode("ascii") for vr in ENCODED_VRS}


def _element(field_: Field, encoding: str, implicit: bool) -> bytes:
    value = _value_bytes(field_, encoding)
    group, number, length = field_.tag >> 16, field_.tag & 0xFFFF, len(value)
    if implicit:
        return IMPLICIT_HEADER.pack(group, number, length) + value
    vr = VR_BYTES[field_.vr]
    if field_.vr in EXPLICIT_VR_LENGTH_32:
        return EXPLICIT_LONG_HEADER.pack(group, number, vr, length) + value
    if length > MAX_SHORT_LENGTH:
        raise UnencodableAnswer("too long for its length field")
    return EXPLICIT_HEADER.pack(group, number, vr, length) + value


def _value_bytes(field_: Field, encoding: str) -> bytes:
    vr, values = field_.vr, field_.values
    if not values:
        return b""
    if vr in BINARY_VRS:
        return _binary(vr, values)
    texts = _texts(vr, values)
    if vr in SINGLE_VALUED_VRS and len(texts) > 1:
        raise UnencodableAnswer("multiple values")
    text = "\\".join(texts)
    try:
        data = text.encode(encoding if vr in TEXT_VRS else "ascii")
    except UnicodeEncodeError as exc:
        raise UnencodableAnswer("not ASCII") from exc
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


def _texts(vr: str, values: list[Any]) -> list[str]:
    number = NUMBER_STRING_VRS.get(vr)
    if number is not None:
        return [_number_text(number, value) for value in values]
    for value in values:
        if type(value) is not str:
            raise UnencodableAnswer("not a string")
    return values


def _number_text(number: tuple[Callable[[Any], Any], Callable[[Any], Any]], value: Any) -> str:
    """An IS or DS value as pydicom writes it: read as a Python number, then held as
    pydicom's IS or DS (a JSON "1.50" is written 1.5, as pydicom does)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnencodableAnswer("not a number")
    python, held = number
    try:
        return str(held(python(value)))
    except (ValueError, OverflowError) as exc:
        raise UnencodableAnswer("not a number") from exc


def _binary(vr: str, values: list[Any]) -> bytes:
    code = BINARY_VRS[vr]
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error as exc:
        raise UnencodableAnswer(f"not {vr}") from exc
