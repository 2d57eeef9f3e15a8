"""The pipeline library's exception names (``dicomnode.lib.exceptions``).

Each class keeps the built-in base the original used, so ``except ValueError``
still catches ``MissingPivotDataset``, and also derives from
:class:`~dicomflow.errors.DicomflowError`, so ``except DicomflowError`` catches
them all. Where dicomflow already had an error for the same meaning, the name
here is that error's subclass, so code catching either name works.
"""

from dicomflow.dicom.factory_errors import BlueprintError as BlueprintConstructionFailure
from dicomflow.dicom.factory_errors import ConstructionError as ConstructionFailure
from dicomflow.dicom.factory_errors import InvalidDatasetError as InvalidDataset
from dicomflow.errors import DicomflowError, ExportError, PipelineDefinitionError


class IncorrectlyConfigured(PipelineDefinitionError):
    """A pipeline attempted to start while configured incorrectly."""


class CouldNotCompleteDIMSEMessage(ExportError):
    """A DIMSE message was unsuccessful."""


class InvalidRootDataDirectory(DicomflowError, ValueError):
    """The root data directory is not a usable directory."""


class InvalidTagType(DicomflowError, TypeError):
    """A tag of an unsupported type was given."""


class InvalidQueryDataset(InvalidDataset):
    """A query dataset is not valid for the DIMSE message it is sent with."""


class MissingModule(DicomflowError, ImportError):
    """A module is missing."""


class MissingPivotDataset(DicomflowError, ValueError):
    """An iterable assumed to hold at least one dataset holds none."""


class InvalidEncoding(DicomflowError, ValueError):
    """A data structure has an unexpected encoding."""


class InvalidTreeNode(DicomflowError, TypeError):
    """An image tree holds a value of an unexpected type."""


class InvalidLatexCompiler(DicomflowError, RuntimeError):
    """A LaTeX compiler that should be available is not."""


class InvalidFont(DicomflowError, ValueError):
    """A font is neither an OTF nor a TTF font."""


class InvalidPynetdicomEvent(DicomflowError, TypeError):
    """A network event is of an unexpected type."""


class MissingNiftiImage(DicomflowError, ValueError):
    """A NIfTI image holds no image."""


class MissingOptionalDependency(DicomflowError, ImportError):
    """An optional dependency is not installed."""


class MissingDatasets(DicomflowError, ValueError):
    """A container expected to hold datasets holds none."""


class NonReducedBasis(DicomflowError, ValueError):
    """A basis has no dominant vector per axis."""


class DimensionalityError(DicomflowError, ValueError):
    """An object does not have the expected number of dimensions."""


class ContractViolation(DicomflowError, RuntimeError):
    """Something that cannot happen happened."""


class GPUError(DicomflowError, RuntimeError):
    """The GPU reported an error."""


__all__ = [
    "BlueprintConstructionFailure",
    "ConstructionFailure",
    "ContractViolation",
    "CouldNotCompleteDIMSEMessage",
    "DimensionalityError",
    "GPUError",
    "IncorrectlyConfigured",
    "InvalidDataset",
    "InvalidEncoding",
    "InvalidFont",
    "InvalidLatexCompiler",
    "InvalidPynetdicomEvent",
    "InvalidQueryDataset",
    "InvalidRootDataDirectory",
    "InvalidTagType",
    "InvalidTreeNode",
    "MissingDatasets",
    "MissingModule",
    "MissingNiftiImage",
    "MissingOptionalDependency",
    "MissingPivotDataset",
    "NonReducedBasis",
]
