"""What of a patient the dashboard may show: by default only hashed keys; the names, IDs
and birth dates themselves only with ``show_patient_identifiers``."""

from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from dicomflow.dicom.keys import value_key

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
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
