"""The pipeline library's grinder import path (``dicomnode.server.grinders``).

The grinder classes live in :mod:`dicomflow.node.grinders`; the function
grinders of :mod:`dicomflow.dicom.grinders` are offered here too.
"""

from dicomflow.dicom.grinders import (
    GrinderError,
    dataset_list_grinder,
    identity_grinder,
    list_grinder,
    numpy_grinder,
    tag_grinder,
)
from dicomflow.node.grinders import (
    DicomTreeGrinder,
    Grinder,
    IdentityGrinder,
    ListGrinder,
    ManyGrinder,
    NiftiGrinder,
    NumpyGrinder,
    RTStructGrinder,
    SeriesGrinder,
    TagGrinder,
)

__all__ = [
    "DicomTreeGrinder",
    "Grinder",
    "GrinderError",
    "IdentityGrinder",
    "ListGrinder",
    "ManyGrinder",
    "NiftiGrinder",
    "NumpyGrinder",
    "RTStructGrinder",
    "SeriesGrinder",
    "TagGrinder",
    "dataset_list_grinder",
    "identity_grinder",
    "list_grinder",
    "numpy_grinder",
    "tag_grinder",
]
