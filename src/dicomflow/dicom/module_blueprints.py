"""Ready-made blueprints, one per IOD module, to compose with ``+``.

``SOP_common_blueprint + general_series_blueprint + image_plane_blueprint``
gives a derived image series: new SOP Instance and Series Instance UIDs,
instance numbers from 1, the geometry copied from the parent series. The
patient and study modules copy the parent's values, so the derived series
lands in the parent's study.
"""

import secrets
from datetime import date, datetime, time
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID, EncapsulatedPDFStorage

from dicomflow.dicom.blueprint import Blueprint
from dicomflow.dicom.uid import gen_uid
from dicomflow.dicom.virtual_element import (
    CopyElement,
    CopyOrElseElement,
    FunctionalElement,
    InstanceCopyElement,
    InstanceEnvironment,
    SeriesElement,
    StaticElement,
    VirtualElement,
)

SERIES_DESCRIPTION = "dicomflow pipeline output"
_SERIES_NUMBER_MAX = 2**31 - 2


def _add_InstanceNumber(caller_args: InstanceEnvironment) -> int:
    return caller_args.instance_number


def add_UID_tag(_: Any = None) -> UID:
    """A new UID (for FunctionalElement and SeriesElement alike)."""
    return gen_uid()


def get_today(_: Any = None) -> date:
    return date.today()


def get_time(_: Any = None) -> time:
    return datetime.now().time()


def get_now_datetime(_: Any = None) -> datetime:
    return datetime.now()


def get_random_number(_: Any = None) -> int:
    """A random SeriesNumber in 1 .. 2**31 - 2 (IS range)."""
    return 1 + secrets.randbelow(_SERIES_NUMBER_MAX)


def _copies(*keywords: str, optional: bool = False) -> list[VirtualElement]:
    return [CopyElement(_tag(keyword), Optional=optional) for keyword in keywords]


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - the keywords below are from the dictionary
        raise KeyError(keyword)
    return tag


def _copies_or_empty(*keywords: str) -> list[VirtualElement]:
    """Type 2 attributes: the parent's value, or empty if the parent lacks it."""
    return [CopyOrElseElement(_tag(k), dictionary_VR(_tag(k)), "") for k in keywords]


def _static(keyword: str, value: Any) -> StaticElement[Any]:
    return StaticElement(_tag(keyword), dictionary_VR(_tag(keyword)), value)


patient_blueprint = Blueprint(
    _copies("PatientName", "PatientID", "PatientSex")
    + _copies("IssuerOfPatientID", "PatientBirthDate", optional=True)
)

frame_of_reference_blueprint = Blueprint(
    _copies("FrameOfReferenceUID", "PositionReferenceIndicator")
)

general_study_blueprint = Blueprint(
    _copies("StudyDate", "StudyTime", "AccessionNumber", "StudyInstanceUID")
    + _copies("StudyDescription", "StudyID", optional=True)
    + _copies_or_empty("ReferringPhysicianName")
)

general_equipment_blueprint = Blueprint(
    _copies_or_empty("Manufacturer")
    + _copies(
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "ManufacturerModelName",
        optional=True,
    )
)

general_image_blueprint = Blueprint(
    [
        _static("ImageType", ["DERIVED", "PRIMARY"]),
        FunctionalElement(_tag("InstanceNumber"), "IS", _add_InstanceNumber),
    ]
)

image_plane_blueprint = Blueprint(
    [
        *_copies("SliceThickness", "ImageOrientationPatient", "PixelSpacing"),
        InstanceCopyElement(_tag("ImagePositionPatient"), "DS"),
    ]
)

ct_image_blueprint = Blueprint(
    _copies_or_empty("AcquisitionNumber")
    + _copies(
        "ImageType",
        "ScanOptions",
        "KVP",
        "DataCollectionDiameter",
        "ReconstructionDiameter",
        "DistanceSourceToDetector",
        "DistanceSourceToPatient",
        "GantryDetectorTilt",
        "TableHeight",
        "RotationDirection",
        "ExposureTime",
        "XRayTubeCurrent",
        "Exposure",
        "ExposureInuAs",
        "FilterType",
        "GeneratorPower",
        "FocalSpots",
        "ConvolutionKernel",
        "RevolutionTime",
        optional=True,
    )
)

patient_study_blueprint = Blueprint(
    _copies(
        "PatientAge",
        "PatientSize",
        "PatientBodyMassIndex",
        "PatientWeight",
        "SmokingStatus",
        "PregnancyStatus",
        optional=True,
    )
)

general_series_blueprint = Blueprint(
    _copies("Modality", "PatientPosition")
    + _copies("OperatorsName", optional=True)
    + [
        SeriesElement(_tag("SeriesDate"), "DA", get_today),
        SeriesElement(_tag("SeriesTime"), "TM", get_time),
        SeriesElement(_tag("SeriesInstanceUID"), "UI", gen_uid),
        SeriesElement(_tag("SeriesDescription"), "LO", lambda: SERIES_DESCRIPTION),
        SeriesElement(_tag("SeriesNumber"), "IS", get_random_number),
    ]
)

SOP_common_blueprint = Blueprint(
    [
        *_copies("SOPClassUID"),
        FunctionalElement(_tag("SOPInstanceUID"), "UI", add_UID_tag),
        FunctionalElement(_tag("InstanceNumber"), "IS", _add_InstanceNumber),
    ]
)

default_report_blueprint = Blueprint(
    [
        _static("SOPClassUID", EncapsulatedPDFStorage),
        FunctionalElement(_tag("ContentDate"), "DA", get_today),
        FunctionalElement(_tag("AcquisitionDateTime"), "DT", get_now_datetime),
        FunctionalElement(_tag("ContentTime"), "TM", get_time),
        _static("Modality", "DOC"),
        _static("ConversionType", "WSD"),
        _static("InstanceNumber", 1),
        SeriesElement(_tag("SeriesInstanceUID"), "UI", add_UID_tag),
        _static("BurnedInAnnotation", "NO"),
        _static("Manufacturer", "dicomflow"),
        SeriesElement(_tag("SeriesNumber"), "IS", get_random_number),
        *_copies_or_empty("ReferringPhysicianName"),
        *_copies("PatientName", "PatientID"),
        *_copies("AccessionNumber", "StudyDescription", "StudyInstanceUID"),
        *_copies(
            "PatientBirthDate",
            "PatientSex",
            "StudyDate",
            "StudyTime",
            "PatientAge",
            "PatientSize",
            "PatientWeight",
            "StudyID",
            optional=True,
        ),
    ]
)
