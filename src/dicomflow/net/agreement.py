"""A C-STORE's command set, presentation context and dataset agree, or it is refused.

Checked at the network edge before anything is stored:

1. The command's Affected SOP Class and Instance UIDs are ASCII UIDs (a peer may
   send any bytes there).
2. The Affected SOP Class UID is the abstract syntax of the presentation context
   the C-STORE came on (never Verification).
3. The dataset decodes, and its SOP Class and Instance UIDs, where it has them,
   are the command's.
4. Native Pixel Data is as long as the Image Pixel module says.
"""

import re
from typing import Protocol

from pydicom import Dataset
from pydicom.uid import UID

from dicomflow.dicom.element_values import text_value
from dicomflow.dicom.pixel_length import check_pixel_data_length
from dicomflow.errors import (
    DatasetMismatchError,
    InstanceTooLargeError,
    SOPClassNotSupportedError,
    UnreadableInstanceError,
)
from dicomflow.logs import escaped

TAGS = {"SOPClassUID": 0x00080016, "SOPInstanceUID": 0x00080018}
UID_TEXT = re.compile(r"[!-\[\]-~]{1,64}")  # lenient: any printable ASCII but backslash


class StoreRequest(Protocol):
    """What is checked of a received C-STORE (a
    :class:`~dicomflow.net.storage.ReceivedInstance`)."""

    sop_class_uid: str
    sop_instance_uid: str
    abstract_syntax: str
    transfer_syntax: UID

    @property
    def dataset(self) -> Dataset: ...


def readable_uid(value: str) -> bool:
    """Whether a command UID can be echoed in a response (ASCII, at most 64 characters)."""
    return bool(UID_TEXT.fullmatch(value))


def check_agreement(request: StoreRequest) -> None:
    """Raise the error that refuses ``request``, if any (see the module's list)."""
    for name, value in (
        ("Affected SOP Class UID", request.sop_class_uid),
        ("Affected SOP Instance UID", request.sop_instance_uid),
    ):
        if not readable_uid(value):
            raise UnreadableInstanceError(f'The command\'s {name} "{escaped(value)}" is not a UID.')
    if request.abstract_syntax and request.sop_class_uid != request.abstract_syntax:
        raise SOPClassNotSupportedError(
            f"A C-STORE of SOP class {request.sop_class_uid} came on a presentation context"
            f" for {request.abstract_syntax}."
        )
    dataset = _decoded(request)
    _check_uid(dataset, "SOPClassUID", request.sop_class_uid)
    _check_uid(dataset, "SOPInstanceUID", request.sop_instance_uid)
    check_pixel_data_length(dataset, request.transfer_syntax)


def _decoded(request: StoreRequest) -> Dataset:
    try:
        return request.dataset
    except (MemoryError, InstanceTooLargeError):
        raise
    except Exception as exc:
        raise UnreadableInstanceError(f"The dataset cannot be decoded: {exc}") from exc


def _check_uid(dataset: Dataset, keyword: str, expected: str) -> None:
    value = text_value(dataset, TAGS[keyword])
    if value is not None and value != expected:
        raise DatasetMismatchError(
            f'The dataset\'s {keyword} "{escaped(value)}" differs from the command\'s "{expected}".'
        )
