"""Errors of the dataset builders (blueprints, derived series, file meta).

They live beside the builders so :mod:`dicomflow.dicom` needs nothing above
:mod:`dicomflow.errors`; ``dicomflow.lib.exceptions`` gives them the pipeline
library's names (``ConstructionFailure``, ``BlueprintConstructionFailure``,
``InvalidDataset``).
"""

from dicomflow.errors import DicomflowError


class ConstructionError(DicomflowError, ValueError):
    """A factory cannot build a dataset or series from its blueprint and inputs."""


class BlueprintError(DicomflowError, ValueError):
    """A blueprint was given an element it cannot hold (a reserved private tag, a non-element)."""


class InvalidDatasetError(DicomflowError, ValueError):
    """A dataset lacks what an operation on it requires (SOPClassUID for file meta...)."""
