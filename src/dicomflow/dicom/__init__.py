"""Pure DICOM helpers: tag parsing, safe path keys, grinders, dataset factories.

The pipeline library's helpers (``gen_uid``, ``make_meta``, ``get_tag``, ...)
and submodules (``blueprints``, ``dicom_factory``, ``sop_mapping``) are
importable from here; each is loaded on first use, so importing any
``dicomflow.dicom`` submodule stays cheap.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomflow.dicom import blueprints as blueprints
    from dicomflow.dicom import dicom_factory as dicom_factory
    from dicomflow.dicom import sop_mapping as sop_mapping
    from dicomflow.dicom.filemeta import make_meta as make_meta
    from dicomflow.dicom.image_position import (
        extrapolate_image_position_patient as extrapolate_image_position_patient,
    )
    from dicomflow.dicom.image_position import (
        extrapolate_image_position_patient_dataset as extrapolate_image_position_patient_dataset,
    )
    from dicomflow.dicom.image_position import sort_datasets as sort_datasets
    from dicomflow.dicom.person_name import format_from_patient_name as format_from_patient_name
    from dicomflow.dicom.person_name import (
        format_from_patient_name_str as format_from_patient_name_str,
    )
    from dicomflow.dicom.tags import get_tag as get_tag
    from dicomflow.dicom.uid import gen_uid as gen_uid

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
