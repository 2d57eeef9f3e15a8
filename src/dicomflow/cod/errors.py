"""The archive's exceptions, under the names the Cloud Optimized DICOM library used.

Each is a :class:`~dicomflow.errors.DicomflowError` and keeps the built-in base its
callers catch (``TypeError`` for a missing ``lock``, ``AssertionError`` for a hint the
file contradicts), so code written for the original library catches them unchanged.
"""

from dicomflow.errors import (
    CODError,
    CODInstanceError,
    CODIntegrityError,
    CODNotFoundError,
    DicomflowError,
    LockAcquisitionError,
)


class LockVerificationError(LockAcquisitionError):
    """The series lock is missing or holds another writer's generation."""


class LockUnspecifiedError(CODError, TypeError):
    """A CODObject was created without choosing ``lock=True`` or ``lock=False``."""


class CleanOpOnUnlockedCODObjectError(CODError):
    """An operation that writes to the datastore was asked of an unlocked CODObject."""


class CODObjectNotFoundError(CODError):
    """The series has no metadata in the datastore and ``create_if_missing=False``."""


class ErrorLogExistsError(CODError):
    """The series has an ``error.log``: it needs attention before anyone writes to it."""


class HintMismatchError(CODInstanceError, AssertionError):
    """A hint (size, crc32c or a UID) contradicts the instance's file."""


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
