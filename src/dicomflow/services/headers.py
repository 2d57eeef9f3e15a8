"""The ``headers`` of a series that callbacks and workers get, as the seed builds them.

The seed's Orthanc script sends the first instance's tags by keyword
(``"Modality"``, ``"SeriesDescription"``, …) plus ``patientId``, ``studyId``,
``seriesId`` and ``dcmpath`` (the series' folder under ``DATA``, where the
instances were written); the scheduler keeps the names its ``headerFields``
lists. dicomflow does the same, with these differences on purpose:

- ``patientId``, ``studyId`` and ``seriesId`` are dicomflow keys (hex digests of
  PatientID, StudyInstanceUID and SeriesInstanceUID), as Orthanc's are digests:
  services build paths from them, and no path may come from a raw DICOM value.
- ``dcmpath`` is ``dicom/{seriesId}``: a copy of the series' instances under
  ``DATA``, so a service that deletes or rewrites it (the seed's anonymiser and
  system cleaner do) never touches the node's own inputs.
- Binary values (OB, OW, UN, …) and sequences are left out; other values are
  JSON (person names and numbers as strings or numbers, multiple values as lists).
- ``InstanceCount`` is always there.
"""

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydicom import Dataset, dcmread

from dicomflow.dicom.keys import value_key

IDS = ("patientId", "studyId", "seriesId", "dcmpath")
HEADER_FIELDS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "StudyDescription",
    "SeriesDescription",
    "BodyPartExamined",
    "Manufacturer",
    "ManufacturerModelName",
    "SeriesNumber",
    "SliceThickness",
    *IDS[:3],
)  # without scheduler.json; dcmpath costs a copy of the series, so it is asked for by name
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"})


def series_headers(
    files: Sequence[Path], data_dir: Path | None, fields: Sequence[str] | None
) -> dict[str, Any]:
    """The headers of the series made of ``files`` (its first instance's tags and ids).

    With ``data_dir``, the instances are copied to ``data_dir/dicom/{seriesId}`` and
    ``dcmpath`` names that folder. ``fields`` keeps only those names (all when ``None``).
    """
    headers: dict[str, Any] = {"InstanceCount": len(files)}
    if not files:
        return headers
    first = dcmread(files[0], stop_before_pixels=True)
    headers |= main_tags(first)
    headers |= {
        "patientId": value_key(first.get("PatientID")),
        "studyId": value_key(first.get("StudyInstanceUID")),
        "seriesId": value_key(first.get("SeriesInstanceUID")),
    }
    if data_dir is not None:
        headers["dcmpath"] = share_series(files, data_dir, headers["seriesId"])
    if fields is None:
        return headers
    kept = {name: headers.get(name) for name in fields}
    return {"InstanceCount": len(files), **kept}


def main_tags(dataset: Dataset) -> dict[str, Any]:
    """The top-level attributes of ``dataset`` by keyword, as JSON values."""
    tags: dict[str, Any] = {}
    for element in dataset:
        if element.keyword and element.VR not in _BINARY_VRS:
            tags[element.keyword] = None if element.value is None else plain(element.value)
    return tags


def share_series(files: Sequence[Path], data_dir: Path, series_id: str) -> str:
    """Copy ``files`` to ``data_dir/dicom/{series_id}``; return that folder relative to
    ``data_dir``."""
    relative = Path("dicom") / series_id
    folder = data_dir / relative
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        partial = folder / f".{path.name}.partial"
        shutil.copyfile(path, partial)
        partial.replace(folder / path.name)
    return relative.as_posix()


def plain(value: Any) -> Any:
    """A DICOM value as JSON: str, int and float kept, lists for multiple values, else str."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value if type(value) in (str, int, float) else _builtin(value)
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [plain(item) for item in value]
    return str(value)


def _builtin(value: str | int | float) -> str | int | float:
    """pydicom's DSfloat, IS, UID, … as the plain built-in type."""
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return str(value)
