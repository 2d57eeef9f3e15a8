"""The pipeline library's ``dicom.blueprints`` import path.

Names only: the blueprints are defined in :mod:`dicomflow.dicom.module_blueprints`.
"""

from dicomflow.dicom.blueprint import Blueprint
from dicomflow.dicom.module_blueprints import (
    SOP_common_blueprint,
    _add_InstanceNumber,
    add_UID_tag,
    ct_image_blueprint,
    default_report_blueprint,
    frame_of_reference_blueprint,
    general_equipment_blueprint,
    general_image_blueprint,
    general_series_blueprint,
    general_study_blueprint,
    get_now_datetime,
    get_random_number,
    get_time,
    get_today,
    image_plane_blueprint,
    patient_blueprint,
    patient_study_blueprint,
)
from dicomflow.dicom.virtual_element import (
    CopyElement,
    FunctionalElement,
    InstanceCopyElement,
    InstanceEnvironment,
    SeriesElement,
    StaticElement,
)

__all__ = [
    "Blueprint",
    "CopyElement",
    "FunctionalElement",
    "InstanceCopyElement",
    "InstanceEnvironment",
    "SOP_common_blueprint",
    "SeriesElement",
    "StaticElement",
    "_add_InstanceNumber",
    "add_UID_tag",
    "ct_image_blueprint",
    "default_report_blueprint",
    "frame_of_reference_blueprint",
    "general_equipment_blueprint",
    "general_image_blueprint",
    "general_series_blueprint",
    "general_study_blueprint",
    "get_now_datetime",
    "get_random_number",
    "get_time",
    "get_today",
    "image_plane_blueprint",
    "patient_blueprint",
    "patient_study_blueprint",
]
