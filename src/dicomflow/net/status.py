"""C-STORE statuses (PS3.4 B.2.3, PS3.7 C) and the one table from errors to statuses.

The engine raises typed errors (:mod:`dicomflow.errors`); only the network edge
turns them into a DICOM status, here, with a log line and a refusal counted:

================================  ======  ==========================================
error                             status  meaning (PS3.4 B.2.3 / PS3.7 C)
================================  ======  ==========================================
SOPClassNotSupportedError         0x0122  Refused: SOP Class not supported (on the
                                          presentation context, e.g. Verification)
DatasetMismatchError              0xA900  Error: Data Set does not match SOP Class
                                          (UIDs differ from the command's, Pixel Data
                                          length contradicts Rows x Columns x ...)
NotArchivableError                0xA900  the same, counted as not_archivable: an
                                          archiving node cannot file the instance
                                          (no valid Study/Series Instance UID)
UnreadableInstanceError,          0xC210  Error: Cannot understand (undecodable
TruncatedDatasetError                     dataset, a command UID not ASCII)
InvalidKeyError                   0xC210  a value unusable as a key (PatientID)
SpoolError, MemoryError,          0xA700  Refused: Out of resources (counted as
InstanceTooLargeError                     too_large or memory by the limit passed)
anything else                     0xC001  Error: Cannot understand (unexpected)
================================  ======  ==========================================
"""

import logging
from dataclasses import dataclass

from dicomflow import metrics
from dicomflow.dicom.integrity import TruncatedDatasetError
from dicomflow.errors import (
    DatasetMismatchError,
    InstanceTooLargeError,
    InvalidKeyError,
    NotArchivableError,
    SOPClassNotSupportedError,
    SpoolError,
    UnreadableInstanceError,
)
from dicomflow.logs import escaped

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
ELEMENTS_DISCARDED = 0xB006  # Warning: a pipeline's filter() did not admit the instance
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
FAILED = 0xC001


@dataclass(frozen=True)
class Refusal:
    """How one kind of error is answered: a status, and the reason it is counted under."""

    status: int
    reason: str


TABLE: dict[type[BaseException], Refusal] = {
    NotArchivableError: Refusal(DATASET_MISMATCH, metrics.REASON_NOT_ARCHIVABLE),
    SOPClassNotSupportedError: Refusal(SOP_CLASS_NOT_SUPPORTED, metrics.REASON_SOP_CLASS),
    DatasetMismatchError: Refusal(DATASET_MISMATCH, metrics.REASON_MISMATCH),
    UnreadableInstanceError: Refusal(CANNOT_UNDERSTAND, metrics.REASON_MALFORMED),
    TruncatedDatasetError: Refusal(CANNOT_UNDERSTAND, metrics.REASON_MALFORMED),
    InvalidKeyError: Refusal(CANNOT_UNDERSTAND, metrics.REASON_INVALID_VALUE),
    SpoolError: Refusal(OUT_OF_RESOURCES, metrics.REASON_STORAGE_ERROR),
    MemoryError: Refusal(OUT_OF_RESOURCES, metrics.REASON_STORAGE_ERROR),
}
UNEXPECTED = Refusal(FAILED, metrics.REASON_HANDLER_ERROR)


def refusal_for(error: BaseException) -> Refusal | None:
    """The table's entry for ``error`` (the first of its classes listed), if any."""
    if isinstance(error, InstanceTooLargeError):  # the setting it passed names the reason
        large = error.setting == "maximum_instance_bytes"
        return Refusal(
            OUT_OF_RESOURCES, metrics.REASON_TOO_LARGE if large else metrics.REASON_MEMORY
        )
    for kind in type(error).__mro__:
        if kind in TABLE:
            return TABLE[kind]
    return None


def refused(origin: object, error: BaseException) -> int:
    """The status for an instance from ``origin`` (an association id, an upload) that
    failed with ``error``; logged once and counted."""
    refusal = refusal_for(error)
    if refusal is None:
        logger.error("%s: storing an instance failed", origin, exc_info=error)
        refusal = UNEXPECTED
    else:
        logger.warning(
            "%s: instance refused with status 0x%04X: %s", origin, refusal.status, escaped(error)
        )
    metrics.rejected(refusal.reason)
    return refusal.status
