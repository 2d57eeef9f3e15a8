"""The archive's exceptions, under the names the Cloud Optimized DICOM library used.

The classes live in :mod:`dicomflow.errors`. Each is a
:class:`~dicomflow.errors.DicomflowError` and keeps the built-in base its callers
catch (``TypeError`` for a missing ``lock``, ``AssertionError`` for a hint the file
contradicts), so code written for the original library catches them unchanged.
"""

from dicomflow.errors import (
    CleanOpOnUnlockedCODObjectError,
    CODError,
    CODInstanceError,
    CODIntegrityError,
    CODNotFoundError,
    CODObjectNotFoundError,
    DicomflowError,
    ErrorLogExistsError,
    HintMismatchError,
    LockAcquisitionError,
    LockUnspecifiedError,
    LockVerificationError,
)

__all__ = [
    "CODError",
    "CODInstanceError",
    "CODIntegrityError",
    "CODNotFoundError",
    "CODObjectNotFoundError",
    "CleanOpOnUnlockedCODObjectError",
    "DicomflowError",
    "ErrorLogExistsError",
    "HintMismatchError",
    "LockAcquisitionError",
    "LockUnspecifiedError",
    "LockVerificationError",
]
