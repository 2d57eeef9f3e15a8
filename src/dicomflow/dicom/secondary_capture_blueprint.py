"""The blueprint of a report rendered as Secondary Capture pages (8-bit RGB images).

Each instance's ``InstanceEnvironment.image`` is one page as a PIL image.
"""

from typing import Any

from pydicom.uid import SecondaryCaptureImageStorage

from dicomflow.dicom.blueprint import Blueprint
from dicomflow.dicom.module_blueprints import add_UID_tag, get_random_number, get_time, get_today
from dicomflow.dicom.virtual_element import (
    CopyElement,
    CopyOrElseElement,
    FunctionalElement,
    InstanceEnvironment,
    SeriesElement,
    StaticElement,
)


class SECONDARY_IMAGE_REPORT_CONSTANTS:
    """Image Pixel values of a report page."""

    SAMPLES_PER_PIXEL = 3
    PHOTOMETRIC_INTERPRETATION = "RGB"
    PLANAR_CONFIGURATION = 0
    BIT_ALLOCATED = 8
    BIT_STORED = 8
    HIGH_BIT = 7
    PIXEL_REPRESENTATION = 0


def generate_report_image(env: InstanceEnvironment) -> bytes:
    """The page's RGB bytes, padded to an even length."""
    data: bytes = env.image.convert("RGB").tobytes("raw")
    return data + b"\x00" * (len(data) % 2)


def get_image_rows(env: InstanceEnvironment) -> Any:
    return env.image.height


def get_image_cols(env: InstanceEnvironment) -> Any:
    return env.image.width


def get_instance_number(env: InstanceEnvironment) -> int:
    return env.instance_number


_C = SECONDARY_IMAGE_REPORT_CONSTANTS

SECONDARY_IMAGE_REPORT_BLUEPRINT = Blueprint(
    [
        *(CopyElement(tag) for tag in (0x00100010, 0x00100020, 0x00080050, 0x0020000D)),
        *(
            CopyElement(tag, Optional=True)
            for tag in (
                0x00100030,  # PatientBirthDate
                0x00100032,  # PatientBirthTime
                0x00100040,  # PatientSex
                0x00080020,  # StudyDate
                0x00080030,  # StudyTime
                0x00081030,  # StudyDescription
                0x00200010,  # StudyID
                0x00101010,  # PatientAge
                0x00101030,  # PatientWeight
            )
        ),
        CopyOrElseElement(0x00080090, "PN", ""),  # ReferringPhysicianName, Type 2
        StaticElement(0x00200020, "CS", ""),  # PatientOrientation, Type 2C
        SeriesElement(0x00080021, "DA", get_today),
        SeriesElement(0x00080031, "TM", get_time),
        StaticElement(0x00080060, "CS", "OT"),
        StaticElement(0x0008103E, "LO", "Study report"),
        SeriesElement(0x0020000E, "UI", add_UID_tag),
        SeriesElement(0x00200011, "IS", get_random_number),
        StaticElement(0x00080064, "CS", "SYN"),
        StaticElement(0x00080008, "CS", ["ORIGINAL", "SECONDARY"]),
        FunctionalElement(0x00200013, "IS", get_instance_number),
        StaticElement(0x00280002, "US", _C.SAMPLES_PER_PIXEL),
        StaticElement(0x00280004, "CS", _C.PHOTOMETRIC_INTERPRETATION),
        StaticElement(0x00280006, "US", _C.PLANAR_CONFIGURATION),
        FunctionalElement(0x00280010, "US", get_image_rows),
        FunctionalElement(0x00280011, "US", get_image_cols),
        StaticElement(0x00280100, "US", _C.BIT_ALLOCATED),
        StaticElement(0x00280101, "US", _C.BIT_STORED),
        StaticElement(0x00280102, "US", _C.HIGH_BIT),
        StaticElement(0x00280103, "US", _C.PIXEL_REPRESENTATION),
        FunctionalElement(0x7FE00010, "OB", generate_report_image),
        StaticElement(0x00080016, "UI", SecondaryCaptureImageStorage),
        FunctionalElement(0x00080018, "UI", add_UID_tag),
    ]
)
