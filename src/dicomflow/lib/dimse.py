"""Alias for seed-style imports of :mod:`dicomflow.dicom.dimse`."""

from dicomflow.dicom.dimse import *  # noqa: F403
from dicomflow.dicom.dimse import __all__ as __all__
