"""What of a patient the dashboard may show: by default only hashed keys; the names, IDs
and birth dates themselves only with ``show_patient_identifiers``."""

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.multival import MultiValue

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
HIDDEN_TEXT = "[hidden]"
MIN_HIDDEN = 3  # shorter values (a sex, "M") would hide half of any text
ROUND_AREAS = ("rounds", "failed", "processed")


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


def redact_text(text: str, values: Iterable[str]) -> str:
    """``text`` (a job's log or error) with every occurrence of ``values`` and of the
    parts of person names among them (``Doe^Jane``: ``Doe``, ``Jane``, ``Jane Doe``,
    ``Doe, Jane``) and dates (``19700101``: ``1970-01-01``) replaced, ignoring case.
    Text that identifies a patient in other ways is not found: the dashboard says so."""
    variants = {variant for value in values for variant in _variants(value)}
    for variant in sorted(variants, key=len, reverse=True):
        text = re.sub(re.escape(variant), HIDDEN_TEXT, text, flags=re.IGNORECASE)
    return text


def identifying_values(value: Any) -> set[str]:
    """The values of identifying attributes anywhere in JSON data (a job's arguments):
    keys by keyword or tag, values plain or DICOM JSON."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if _identifying(key):
                found |= _texts(item)
            else:
                found |= identifying_values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= identifying_values(item)
    return found


_ROUND_IDENTIFIERS: dict[tuple[Path, str], frozenset[str]] = {}
_ROUND_CACHE_SIZE = 4096


def round_identifiers(data_root: Path, round_id: object) -> frozenset[str]:
    """The identifying values of a pipeline round's patient, from one of its instances
    (wherever the round is: running, failed or kept); empty when none is left. Values
    found are kept (a round's patient never changes), so a list of jobs reads each
    round once."""
    if not (isinstance(round_id, str) and re.fullmatch(r"[0-9a-f]{32}", round_id)):
        return frozenset()
    key = (data_root, round_id)
    if key in _ROUND_IDENTIFIERS:
        return _ROUND_IDENTIFIERS[key]
    found = _read_round_identifiers(data_root, round_id)
    if found:
        if len(_ROUND_IDENTIFIERS) >= _ROUND_CACHE_SIZE:
            _ROUND_IDENTIFIERS.pop(next(iter(_ROUND_IDENTIFIERS)))
        _ROUND_IDENTIFIERS[key] = found
    return found


def _read_round_identifiers(data_root: Path, round_id: str) -> frozenset[str]:
    for area in ROUND_AREAS:
        found = next((data_root / area / round_id).rglob("*.dcm"), None)
        if found is not None:
            values = _instance_identifiers(found)
            if values is not None:
                return values
    return frozenset()


def file_identifiers(paths: Iterable[Path]) -> frozenset[str]:
    """The identifying values of every instance in ``paths`` that can be read."""
    return frozenset(text for path in paths for text in _instance_identifiers(path) or ())


def _instance_identifiers(path: Path) -> frozenset[str] | None:
    """The identifying values of the instance at ``path``; None if it cannot be read."""
    try:
        dataset = dcmread(path, stop_before_pixels=True)
    except Exception:
        return None
    return frozenset(text for keyword in REDACTED for text in _texts(dataset.get(keyword, "")))


def _texts(value: Any) -> set[str]:
    """Every text in a value: strings, person names, multi-valued elements, DICOM JSON
    ``Value`` lists and person-name groups."""
    items: Iterable[Any]
    if isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple | MultiValue):
        items = value
    else:
        text = "" if value is None else str(value).strip()
        return {text} if len(text) >= MIN_HIDDEN else set()
    found: set[str] = set()
    for item in items:
        found |= _texts(item)
    return found


def _variants(value: str) -> set[str]:
    found = {value}
    parts = [part.strip() for part in value.split("^") if part.strip()]
    if len(parts) > 1:
        found |= set(parts) | {" ".join(reversed(parts[:2])), ", ".join(parts[:2])}
        found.add(" ".join(parts[:2]))
    if re.fullmatch(r"\d{8}", value):
        found.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    return {variant for variant in found if len(variant) >= MIN_HIDDEN}
