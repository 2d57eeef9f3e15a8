"""What of a patient the dashboard may show: by default only hashed keys; the names, IDs
and birth dates themselves only with ``show_patient_identifiers``."""

import json
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from dicomflow.dicom.keys import value_key

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
REDACTED = (
    *IDENTIFYING,
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "IssuerOfPatientID",
)
REDACTED_KEYS = frozenset(REDACTED) | frozenset(f"{tag_for_keyword(k):08X}" for k in REDACTED)
SHORT = 12


def short_key(key: str) -> str:
    """How a (hashed) key is shown: its first characters."""
    return key[:SHORT]


def hashed(value: object) -> str:
    """A value shown hashed (``value_key``, shortened)."""
    return short_key(value_key(value))


def dataset_identifiers(dataset: Dataset | None, show: bool) -> dict[str, str]:
    """The identifying values of ``dataset`` when ``show``; otherwise nothing."""
    if dataset is None or not show:
        return {}
    return {keyword: str(dataset.get(keyword, "") or "") for keyword in IDENTIFYING}


def json_value(metadata: dict[str, Any], keyword: str) -> str:
    """The first value of ``keyword`` in a DICOM JSON dataset, as text ("" if absent)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return ""
    element = metadata.get(f"{tag:08X}") or {}
    values = element.get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # a person name
        return str(first.get("Alphabetic", ""))
    return str(first)


def json_identifiers(metadata: dict[str, Any], show: bool) -> dict[str, str]:
    """The identifying values of a DICOM JSON dataset when ``show``; otherwise nothing."""
    if not show:
        return {}
    return {keyword: json_value(metadata, keyword) for keyword in IDENTIFYING}


def redact(value: Any, show: bool) -> Any:
    """``value`` (JSON data such as a job's arguments) with the values of identifying
    attributes, named by keyword or tag (``"00100010"``), replaced by their hash; unchanged
    when ``show``."""
    if show:
        return value
    if isinstance(value, dict):
        return {
            key: _hidden(item) if _identifying(key) else redact(item, show)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, show) for item in value]
    return value


def _identifying(key: object) -> bool:
    text = str(key).strip("()").replace(",", "").upper() if isinstance(key, str) else ""
    return key in REDACTED_KEYS or text in REDACTED_KEYS


def _hidden(value: Any) -> str:
    return f"(hidden; hash {hashed(json.dumps(value, sort_keys=True, default=str))})"
