"""The pipeline library's exception names (``dicomnode.lib.exceptions``).

The classes live in :mod:`dicomflow.errors`. Each keeps the built-in base the
original used, so ``except ValueError`` still catches ``MissingPivotDataset``,
and also derives from :class:`~dicomflow.errors.DicomflowError`. Where dicomflow
already had an error for the same meaning, the class is that error's subclass,
so code catching either name works.
"""

from dicomflow.errors import (
    BlueprintConstructionFailure,
    ConstructionFailure,
    ContractViolation,
    CouldNotCompleteDIMSEMessage,
    DimensionalityError,
    GPUError,
    IncorrectlyConfigured,
    InvalidDataset,
    InvalidEncoding,
    InvalidFont,
    InvalidLatexCompiler,
    InvalidPynetdicomEvent,
    InvalidQueryDataset,
    InvalidRootDataDirectory,
    InvalidTagType,
    InvalidTreeNode,
    MissingDatasets,
    MissingModule,
    MissingNiftiImage,
    MissingOptionalDependency,
    MissingPivotDataset,
    NonReducedBasis,
)

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
