"""The pipeline library's ``dicom.blueprints.secondary_image_report_blueprint`` import path."""

from dicomflow.dicom.secondary_capture_blueprint import (
    SECONDARY_IMAGE_REPORT_BLUEPRINT,
    SECONDARY_IMAGE_REPORT_CONSTANTS,
    generate_report_image,
    get_image_cols,
    get_image_rows,
    get_instance_number,
)

__all__ = [
    "SECONDARY_IMAGE_REPORT_BLUEPRINT",
    "SECONDARY_IMAGE_REPORT_CONSTANTS",
    "generate_report_image",
    "get_image_cols",
    "get_image_rows",
    "get_instance_number",
]
