"""Query keys and matching over DICOM JSON (PS3.18 8.3.4, PS3.4 C.2.2.2), shared by
QIDO-RS, C-FIND and the archive catalog.

Matching keys are given by keyword (``PatientID``) or tag (``00100020``):

- an empty value matches everything (the attribute is only returned);
- UIDs match any of a ``,`` or ``\\`` separated list;
- DA, TM and DT match a single value or a range (``20240101-``, ``-20241231``,
  ``20240101-20240131``);
- numbers match by value; CS values match any of a ``,`` separated list;
- other strings match exactly, or with ``*`` and ``?`` wildcards; person names
  ignore case and match any of their component groups.

An attribute holding several values matches when any of them does; an absent or
empty attribute matches only the empty key. ``fuzzymatching`` is accepted and
ignored; ``limit``/``offset`` page the results; ``includefield`` adds attributes
to the results (``all`` for every attribute held).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from dicomflow.dicom.keys import shorten
from dicomflow.errors import QueryKeyError

DicomJson = dict[str, Any]

CONTROL_PARAMETERS = {"limit", "offset", "fuzzymatching", "includefield"}
DATE_TIME_VRS = {"DA", "TM", "DT"}
NUMBER_VRS = {"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
TAG_PATTERN = re.compile(r"^[0-9A-Fa-f]{8}$")
MAX_LIMIT = 100_000


@dataclass(frozen=True)
class Key:
    """One matching key: the tag (8 upper-case hex digits), its VR and the query value."""

    tag: str
    vr: str
    value: str

    def matches(self, dataset: DicomJson) -> bool:
        if self.value in ("", "*"):
            return True
        values = _values(dataset.get(self.tag))
        if self.vr == "UI":
            wanted = set(re.split(r"[,\\]", self.value))
            return any(str(v) in wanted for v in values)
        return any(_matches_one(self.vr, self.value, v) for v in values)


@dataclass
class Query:
    """Matching keys, the attributes asked for, and paging: a QIDO-RS query string or a
    C-FIND identifier."""

    keys: list[Key] = field(default_factory=list)
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0

    def matches(self, dataset: DicomJson, skip: Iterable[str] = ()) -> bool:
        """Whether ``dataset`` matches every key (but those whose tag is in ``skip``)."""
        skipped = set(skip)
        return all(key.matches(dataset) for key in self.keys if key.tag not in skipped)

    def key_tags(self) -> set[str]:
        return {key.tag for key in self.keys}

    def page(self, results: list[Any]) -> list[Any]:
        end = None if self.limit is None else self.offset + self.limit
        return results[self.offset : end]


def parse_query(items: Iterable[tuple[str, str]]) -> Query:
    """Parse QIDO-RS query parameters.

    Raises:
        QueryKeyError: naming the parameter, for unknown attributes or bad
            ``limit``/``offset`` values.
    """
    query = Query()
    for name, value in items:
        lowered = name.lower()
        if lowered == "includefield":
            _add_includes(query, value)
        elif lowered in ("limit", "offset"):
            setattr(query, lowered, _count(name, value))
        elif lowered != "fuzzymatching":
            tag = attribute_tag(name)
            query.keys.append(Key(tag, _vr(tag), value))
    return query


def attribute_tag(name: str) -> str:
    """Return the tag (8 upper-case hex digits) of a keyword or tag.

    Raises:
        QueryKeyError: if ``name`` is neither.
    """
    if TAG_PATTERN.match(name):
        return name.upper()
    tag = tag_for_keyword(name)
    if tag is None:
        raise QueryKeyError(
            f'Query parameter "{shorten(name)}" is neither a DICOM keyword nor a tag '
            "(sequence paths are not supported)."
        )
    return f"{tag:08X}"


def keyword(tag: str) -> str:
    return keyword_for_tag(int(tag, 16)) or tag


def _add_includes(query: Query, value: str) -> None:
    for name in filter(None, (part.strip() for part in value.split(","))):
        if name.lower() == "all":
            query.include_all = True
        else:
            query.include.add(attribute_tag(name))


def _count(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) > MAX_LIMIT:
        raise QueryKeyError(
            f'Query parameter {name} "{shorten(value)}" is not a whole number up to {MAX_LIMIT}.'
        )
    return int(value)


def _vr(tag: str) -> str:
    try:
        return str(dictionary_VR(int(tag, 16)))
    except KeyError:
        return "UN"


def _values(element: Any) -> list[Any]:
    if not isinstance(element, dict):
        return []
    values = element.get("Value") or []
    return [v for v in values if v is not None and v != ""]


def _matches_one(vr: str, wanted: str, value: Any) -> bool:
    if vr == "PN":
        names = value.values() if isinstance(value, dict) else [value]
        return any(_wildcard(wanted.lower(), str(name).lower()) for name in names)
    if vr in DATE_TIME_VRS:
        return _in_range(vr, wanted, str(value))
    if vr in NUMBER_VRS:
        return _same_number(wanted, value)
    if vr == "CS":
        return any(_wildcard(choice.strip(), str(value)) for choice in wanted.split(","))
    return _wildcard(wanted, str(value))


def _wildcard(pattern: str, value: str) -> bool:
    """``*`` (any run) and ``?`` (one character) matching, without regular expressions, in
    at most len(pattern) x len(value) steps (no backtracking blow-up on hostile patterns)."""
    if "*" not in pattern and "?" not in pattern:
        return pattern == value
    p = v = 0
    star, resume = -1, 0
    while v < len(value):
        if p < len(pattern) and pattern[p] in ("?", value[v]):
            p, v = p + 1, v + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume, p = p, v, p + 1
        elif star >= 0:
            resume += 1
            p, v = star + 1, resume
        else:
            return False
    return all(char == "*" for char in pattern[p:])


def _in_range(vr: str, wanted: str, value: str) -> bool:
    if "-" not in wanted or (vr == "DT" and wanted.count("-") == 1 and _dt_offset(wanted)):
        return _normal(vr, wanted) == _normal(vr, value)
    low, _, high = wanted.partition("-")
    normal = _normal(vr, value)
    if low and normal < _normal(vr, low):
        return False
    return not (high and normal > _normal(vr, high, upper=True))


def _dt_offset(wanted: str) -> bool:
    """Whether a DT value's only ``-`` is a UTC offset (``…-0500``), not a range."""
    head, _, tail = wanted.partition("-")
    return len(head) > 8 and len(tail) == 4 and tail.isdigit()


def _normal(vr: str, value: str, upper: bool = False) -> str:
    """A comparable form: no separators; times padded (the end of a range padded up)."""
    text = value.strip().replace(":", "")
    if vr == "DA":
        return text.replace(".", "").replace("-", "")[:8]
    width = 6 if vr == "TM" else 14
    head, dot, fraction = text.partition(".")
    head = head.ljust(width, "9" if upper else "0")
    return head + (dot + fraction if dot else ("" if not upper else ".999999"))


def _same_number(wanted: str, value: Any) -> bool:
    try:
        return float(wanted) == float(value)
    except (TypeError, ValueError):
        return False
