"""Alias of :mod:`dicomflow.dicom.grinders` for seed-style imports."""

from dicomflow.dicom.grinders import (
    GrinderError,
    GrindType,
    dataset_list_grinder,
    identity_grinder,
    list_grinder,
    numpy_grinder,
    tag_grinder,
)

__all__ = [
    "GrindType",
    "GrinderError",
    "dataset_list_grinder",
    "identity_grinder",
    "list_grinder",
    "numpy_grinder",
    "tag_grinder",
]
