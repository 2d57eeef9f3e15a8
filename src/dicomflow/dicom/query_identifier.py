"""C-FIND, C-MOVE and C-GET identifiers (PS3.4 C.4): read as a level and matching keys,
answered as response identifiers.

:func:`parse_identifier` turns a request's identifier into the level it queries and a
:class:`~dicomflow.dicom.matching.Query`: each non-empty element is a matching key with
its value as PS3.4 C.2.2.2 text (multi-valued UIDs joined with ``\\``, code strings
with ``,``, person names as their string, ranges kept); each empty element, and each
sequence, is a return key. QueryRetrieveLevel and SpecificCharacterSet are not keys;
private elements and group lengths are ignored.

:func:`response_identifier` answers one match: the identifier's keys with the match's
values (empty where it has none), the level, the node's AE title as RetrieveAETitle,
and ``ISO_IR 192`` as SpecificCharacterSet when any text is not ASCII.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from dicomflow.dicom.keys import shorten
from dicomflow.dicom.matching import DicomJson, Key, Query
from dicomflow.errors import InvalidQueryDataset, QueryKeyError, UnknownQueryLevelError

logger = logging.getLogger(__name__)

PATIENT_ROOT = "PATIENT_ROOT"
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
"""The query/retrieve levels, from the top (the catalog's ``Level`` values)."""
UNIQUE_KEYS = {
    "PATIENT": 0x00100020,  # PatientID
    "STUDY": 0x0020000D,  # StudyInstanceUID
    "SERIES": 0x0020000E,  # SeriesInstanceUID
    "IMAGE": 0x00080018,  # SOPInstanceUID
}
QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
RETRIEVE_AE_TITLE = 0x00080054
INSTANCE_AVAILABILITY = 0x00080056
NOT_KEYS = {QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, RETRIEVE_AE_TITLE, 0x00080053}
UTF8 = "ISO_IR 192"
MAX_UID_LIST_CHARS = 65 * 1024  # a C-MOVE of a thousand studies
MAX_VALUE_CHARS = 1024  # no other attribute's value is anywhere near as long


@dataclass(frozen=True)
class QueryIdentifier:
    """A request's identifier, read: the level (a :data:`LEVELS` value) and the query."""

    level: str
    query: Query


def parse_identifier(identifier: Dataset, model: str) -> QueryIdentifier:
    """Read a C-FIND/C-MOVE/C-GET identifier of information model ``model``
    (``PATIENT_ROOT`` or ``STUDY_ROOT``).

    Raises:
        UnknownQueryLevelError: no or an unknown QueryRetrieveLevel for the model.
        InvalidQueryDataset: an element cannot be decoded (the message names it).
        QueryKeyError: a key value that cannot be matched (named, with its value).
    """
    level = query_level(identifier, model)
    query = Query()
    for element in _elements(identifier):
        tag = f"{element.tag:08X}"
        value = key_value(element)
        if value is None:
            query.include.add(tag)
        else:
            query.keys.append(Key(tag, element.VR, value))
    return QueryIdentifier(level, query)


def query_level(identifier: Dataset, model: str) -> str:
    """The identifier's QueryRetrieveLevel, checked against the information model."""
    element = identifier.get(QUERY_RETRIEVE_LEVEL)
    text = str(element.value or "").strip().upper() if element is not None else ""
    allowed = LEVELS if model == PATIENT_ROOT else LEVELS[1:]
    if text not in allowed:
        raise UnknownQueryLevelError(
            f'QueryRetrieveLevel "{shorten(text)}" is not one of {", ".join(allowed)}'
            f" ({model} information model)."
        )
    return text


def key_value(element: DataElement) -> str | None:
    """An element's matching value as PS3.4 C.2.2.2 text; None for a return key (empty,
    or a sequence: sequence matching is not offered).

    Raises:
        QueryKeyError: the value is too long or holds a NUL character.
    """
    if element.VR == "SQ" or element.is_empty:
        return None
    value = element.value
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    separator = "," if element.VR == "CS" else "\\"
    text = separator.join(_text(v) for v in values).strip(" \x00")
    _check_value(element, text)
    return text or None


def _text(value: Any) -> str:
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value).strip()


def _check_value(element: DataElement, text: str) -> None:
    limit = MAX_UID_LIST_CHARS if element.VR == "UI" else MAX_VALUE_CHARS
    problem = ""
    if len(text) > limit:
        problem = f"is {len(text)} characters long; at most {limit} are matched"
    elif "\x00" in text:
        problem = "holds a NUL character"
    if problem:
        raise QueryKeyError(
            f'Key {element.keyword or f"{element.tag:08X}"} "{shorten(text)}" {problem}.'
        )


def _elements(identifier: Dataset) -> Iterator[DataElement]:
    """The identifier's public elements but those that are not keys, decoded."""
    for tag in list(identifier.keys()):
        if tag.is_private or tag.element == 0 or tag.group in (0x0000, 0x0002):
            continue
        if int(tag) in NOT_KEYS:
            continue
        try:
            yield identifier[tag]
        except Exception as exc:  # pydicom raises what its value conversion raises
            raise InvalidQueryDataset(
                f"Identifier element {int(tag):08X} cannot be decoded: {shorten(str(exc))}."
            ) from exc


def response_identifier(
    identifier: Dataset, level: str, result: DicomJson, ae_title: str
) -> Dataset:
    """The response identifier of one match (``result``, DICOM JSON of the catalog): the
    request's keys with the match's values, empty where it has none; bulk data dropped."""
    response = Dataset()
    non_ascii = False
    for tag in _returned_tags(identifier):
        found = result.get(f"{int(tag):08X}")
        element = _from_json(int(tag), found) if found else None
        non_ascii = non_ascii or (element is not None and _any_non_ascii(found))
        response.add(element or DataElement(tag, _vr(identifier, tag), None))
    response.QueryRetrieveLevel = level
    response.RetrieveAETitle = ae_title
    if INSTANCE_AVAILABILITY in identifier:
        response.InstanceAvailability = "ONLINE"
    if non_ascii:
        response.SpecificCharacterSet = UTF8
    return response


def _returned_tags(identifier: Dataset) -> Iterator[Any]:
    for tag in list(identifier.keys()):
        if not (tag.is_private or tag.element == 0 or int(tag) in NOT_KEYS):
            yield tag


def _vr(identifier: Dataset, tag: Any) -> str:
    try:
        return str(identifier[tag].VR)
    except Exception:  # an undecodable request element is answered empty, as UN
        return "UN"


def _from_json(tag: int, element: DicomJson) -> DataElement | None:
    """One DICOM JSON element as a pydicom element; None (logged) if it cannot be."""
    try:
        dataset = Dataset.from_json({f"{tag:08X}": _without_bulk(element)})
        return dataset[tag]
    except Exception as exc:  # a stored value pydicom refuses is answered empty
        logger.warning("attribute %08X answered empty: %s", tag, shorten(str(exc), 200))
        return None


def _without_bulk(element: DicomJson) -> DicomJson:
    """The element without BulkDataURI values, in its items too."""
    if "BulkDataURI" in element:
        return {"vr": element.get("vr", "UN")}
    if element.get("vr") != "SQ":
        return element
    items = [
        {tag: _without_bulk(item_element) for tag, item_element in item.items()}
        for item in element.get("Value") or []
        if isinstance(item, dict)
    ]
    return {"vr": "SQ", "Value": items}


def _any_non_ascii(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii()
    if isinstance(value, dict):
        return any(_any_non_ascii(v) for v in value.values())
    if isinstance(value, list):
        return any(_any_non_ascii(v) for v in value)
    return False


def check_retrieval(parsed: QueryIdentifier) -> None:
    """Check a C-MOVE/C-GET identifier names what it retrieves: the unique key of its
    level, without wildcards (PS3.4 C.4.2.2.1), so that an empty identifier never sends
    a whole archive.

    Raises:
        InvalidQueryDataset: the unique key is missing, empty or a wildcard.
    """
    tag = f"{UNIQUE_KEYS[parsed.level]:08X}"
    values = [key.value for key in parsed.query.keys if key.tag == tag]
    if not values or any("*" in value or "?" in value for value in values):
        raise InvalidQueryDataset(
            f"A {parsed.level} level retrieval needs the unique key {tag} (a value or a list"
            f' of values, no wildcard); it has "{shorten(values[0] if values else "")}".'
        )
