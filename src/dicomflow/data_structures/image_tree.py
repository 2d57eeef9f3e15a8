"""The pipeline library's image tree import path (trees: :mod:`dicomflow.dicom.image_tree`)."""

from dicomflow.dicom.identity_mapping import IdentityMapping
from dicomflow.dicom.image_tree import (
    DicomTree,
    ImageTreeInterface,
    PatientTree,
    SeriesTree,
    StudyTree,
)

__all__ = [
    "DicomTree",
    "IdentityMapping",
    "ImageTreeInterface",
    "PatientTree",
    "SeriesTree",
    "StudyTree",
]
