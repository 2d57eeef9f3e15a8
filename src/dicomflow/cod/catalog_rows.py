"""What the catalog stores of one series: its row, its instances' rows, their columns.

A series row holds the attributes of the series' first instance by InstanceNumber
(patient, study and series level: what queries above the instance level match and
return) plus one indexed column per attribute queries match most. An instance row
holds only the attributes in which the instance differs from that first instance,
and its AvailableTransferSyntaxUID.

A column holds its attribute's single value in a form SQL compares exactly as
:meth:`Query.matches` does (person names lower-cased, dates and times normalised,
numbers as numbers). A value a column cannot hold exactly (several values, several
person-name groups, a NUL byte) leaves the column empty and marks the row
``irregular``: searches then check that row with :meth:`Query.matches` itself.
"""

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dicomflow.cod.metadata import Record
from dicomflow.cod.query import SeriesDocument, instance_number, plain_attributes
from dicomflow.dicom.matching import DicomJson, _normal

TRANSFER_SYNTAX = "00020010"
SOP_CLASS = "00080016"
MEDIA_SOP_CLASS = "00020002"
AVAILABLE_SYNTAXES = "00083002"


class ColumnKind(StrEnum):
    """How an indexed column is compared (see :mod:`dicomflow.cod.catalog_filter`)."""

    TEXT = "text"  # exact or * ? wildcards
    NAME = "name"  # person name: lower-cased, wildcards
    CODE = "code"  # CS: a , separated list of exact or wildcard values
    DATE = "date"  # DA: value or range, normalised
    TIME = "time"  # TM: value or range, normalised
    NUMBER = "number"  # IS/DS: by value
    UID = "uid"  # a , or \ separated list of UIDs


@dataclass(frozen=True)
class Column:
    """An indexed column of the series table, from the attribute ``tag``."""

    name: str
    tag: str
    kind: ColumnKind


SERIES_COLUMNS = (
    Column("patient_id", "00100020", ColumnKind.TEXT),
    Column("patient_name", "00100010", ColumnKind.NAME),
    Column("patient_birth_date", "00100030", ColumnKind.DATE),
    Column("study_date", "00080020", ColumnKind.DATE),
    Column("study_time", "00080030", ColumnKind.TIME),
    Column("accession_number", "00080050", ColumnKind.TEXT),
    Column("study_id", "00200010", ColumnKind.TEXT),
    Column("modality", "00080060", ColumnKind.CODE),
    Column("series_number", "00200011", ColumnKind.NUMBER),
    Column("study_description", "00081030", ColumnKind.TEXT),
    Column("series_description", "0008103E", ColumnKind.TEXT),
)
INSTANCE_COLUMNS = (
    Column("sop_class_key", SOP_CLASS, ColumnKind.UID),
    Column("instance_number", "00200013", ColumnKind.NUMBER),
)
SERIES_TAGS = frozenset(column.tag for column in SERIES_COLUMNS) | {"0020000D", "0020000E"}

# The attributes of the patient (all of group 0010), study and series levels: most
# searches match and return these alone, read from a series' short summary instead of
# the attributes of its whole first instance.
SUMMARY_TAGS = frozenset(
    {
        "00080005", "00080020", "00080021", "00080030", "00080031", "00080050", "00080051",
        "00080060", "00080061", "00080064", "00080070", "00080080", "00080090", "00080096",
        "00080201", "00081010", "00081030", "00081032", "0008103E", "00081040", "00081048",
        "00081049", "00081050", "00081052", "00081060", "00081062", "00081070", "00081072",
        "00081080", "00081090", "00081111", "00180015", "00181030", "0020000D", "0020000E",
        "00200010", "00200011", "00200060", "00321032", "00321033", "00321060", "00400244",
        "00400245", "00400253", "00400254", "00400275", "00080056", "00081190", "00201200",
        "00201202", "00201204", "00201206", "00201208", "00201209",
    }
)  # fmt: skip

ColumnValue = str | float | None


@dataclass(frozen=True)
class SeriesRow:
    study_uid: str
    series_uid: str
    patient_key: str
    modality: str | None  # the first Modality value (what ModalitiesInStudy lists)
    columns: dict[str, ColumnValue]
    irregular: bool
    instance_count: int
    attributes: str  # DICOM JSON text
    summary: str  # DICOM JSON text: the patient, study and series level attributes alone


@dataclass(frozen=True)
class InstanceRow:
    sop_uid: str
    sop_class_uid: str
    transfer_syntax: str
    position: int  # InstanceNumber, 0 when absent: the order within the series
    columns: dict[str, ColumnValue]
    irregular: bool
    delta: str  # DICOM JSON text: what differs from the series' attributes


@dataclass(frozen=True)
class SeriesRows:
    series: SeriesRow
    instances: list[InstanceRow]


def series_rows(document: SeriesDocument) -> SeriesRows | None:
    """The rows of a series (None when its metadata holds no instance)."""
    ordered = sorted(document.instances.items(), key=_order)
    if not ordered:
        return None
    attributes = plain_attributes(ordered[0][1].get("metadata", {}))
    columns, irregular = _columns(attributes, SERIES_COLUMNS)
    series = SeriesRow(
        study_uid=document.study_uid,
        series_uid=document.series_uid,
        patient_key=patient_key(attributes),
        modality=_first(attributes, "00080060"),
        columns=columns,
        irregular=irregular,
        instance_count=len(ordered),
        attributes=_text(attributes),
        summary=_text(summary_of(attributes)),
    )
    return SeriesRows(series, [_instance_row(uid, r, attributes) for uid, r in ordered])


def summary_of(attributes: DicomJson) -> DicomJson:
    """The patient, study and series level attributes (see ``SUMMARY_TAGS``)."""
    return {t: e for t, e in attributes.items() if t in SUMMARY_TAGS or t.startswith("0010")}


def in_summary(tag: str) -> bool:
    return tag in SUMMARY_TAGS or tag.startswith("0010")


def patient_key(attributes: DicomJson) -> str:
    """What identifies a patient: the PatientID's values (empty when it has none)."""
    return storable("\\".join(str(v) for v in _values(attributes.get("00100020"))))


def _instance_row(uid: str, record: Record, series: DicomJson) -> InstanceRow:
    metadata = record.get("metadata", {})
    own = plain_attributes(metadata)
    delta = {tag: element for tag, element in own.items() if series.get(tag) != element}
    syntaxes = syntax_element(metadata)
    if syntaxes is not None:
        delta[AVAILABLE_SYNTAXES] = syntaxes
    columns, irregular = _columns({**series, **own}, INSTANCE_COLUMNS)
    return InstanceRow(
        sop_uid=uid,
        sop_class_uid=_first(own, SOP_CLASS) or _first(metadata, MEDIA_SOP_CLASS) or "",
        transfer_syntax=_first(metadata, TRANSFER_SYNTAX) or "",
        position=instance_number(record),
        columns=columns,
        irregular=irregular or bool(SERIES_TAGS & delta.keys()) or len(_syntaxes(metadata)) > 1,
        delta=_text(delta),
    )


def syntax_element(metadata: DicomJson) -> DicomJson | None:
    """AvailableTransferSyntaxUID of an instance, from its file meta."""
    syntaxes = _syntaxes(metadata)
    return {"vr": "UI", "Value": syntaxes} if syntaxes else None


def _syntaxes(metadata: DicomJson) -> list[Any]:
    element = metadata.get(TRANSFER_SYNTAX)
    return list(element.get("Value") or []) if isinstance(element, dict) else []


def _order(item: tuple[str, Record]) -> tuple[int, str]:
    return instance_number(item[1]), item[0]


def _columns(
    attributes: DicomJson, columns: Iterable[Column]
) -> tuple[dict[str, ColumnValue], bool]:
    values: dict[str, ColumnValue] = {}
    irregular = False
    for column in columns:
        value, exact = column_value(column.kind, attributes.get(column.tag))
        values[column.name] = value
        irregular = irregular or not exact
    return values, irregular


def column_value(kind: ColumnKind, element: Any) -> tuple[ColumnValue, bool]:
    """The column's value for ``element`` and whether it stands exactly for it."""
    values = _values(element)
    if not values:
        return None, True
    if len(values) > 1:
        return None, False
    value = values[0]
    if kind is ColumnKind.NAME:
        if not isinstance(value, dict) or set(value) != {"Alphabetic"}:
            return None, False
        value = str(value["Alphabetic"]).lower()
    elif kind is ColumnKind.NUMBER:
        return _number(value)
    text = str(value)
    if storable(text) != text:
        return None, False
    if kind is ColumnKind.DATE:
        return _normal("DA", text), True
    if kind is ColumnKind.TIME:
        return _normal("TM", text), True
    return text, True


def _number(value: Any) -> tuple[ColumnValue, bool]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, True  # matches no number key, as Query.matches
    return (number, True) if math.isfinite(number) else (None, False)


def _values(element: Any) -> list[Any]:
    if not isinstance(element, dict):
        return []
    return [v for v in element.get("Value") or [] if v is not None and v != ""]


def _first(attributes: DicomJson, tag: str) -> str | None:
    values = _values(attributes.get(tag))
    return storable(str(values[0])) if values else None


def storable(text: str) -> str:
    """``text`` as every database stores it: without NUL characters (PostgreSQL refuses
    them) or lone surrogates (no UTF-8 encoding has them)."""
    cleaned = text.replace("\x00", "")
    return cleaned.encode("utf-8", "replace").decode("utf-8")


def _text(attributes: DicomJson) -> str:
    return json.dumps(attributes, separators=(",", ":"))
