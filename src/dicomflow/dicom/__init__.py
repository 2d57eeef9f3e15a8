"""Pure DICOM helpers: tag parsing, safe path keys, grinders, dataset factories.

The pipeline library's helpers (``gen_uid``, ``make_meta``, ``get_tag``, ...)
and submodules (``blueprints``, ``dicom_factory``, ``sop_mapping``) are
importable from here; each is loaded on first use, so importing any
``dicomflow.dicom`` submodule stays cheap.
"""

import importlib
from typing import Any

_HELPERS = {
    "gen_uid": "dicomflow.dicom.uid",
    "make_meta": "dicomflow.dicom.filemeta",
    "get_tag": "dicomflow.dicom.tags",
    "extrapolate_image_position_patient": "dicomflow.dicom.image_position",
    "extrapolate_image_position_patient_dataset": "dicomflow.dicom.image_position",
    "sort_datasets": "dicomflow.dicom.image_position",
    "format_from_patient_name": "dicomflow.dicom.person_name",
    "format_from_patient_name_str": "dicomflow.dicom.person_name",
}
_SUBMODULES = ("blueprints", "dicom_factory", "sop_mapping")

__all__ = sorted([*_HELPERS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _HELPERS:
        return getattr(importlib.import_module(_HELPERS[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
