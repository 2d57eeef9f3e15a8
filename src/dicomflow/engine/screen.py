"""``Screen``: a pipeline's ``filter(dataset) -> bool``, asked before an instance is kept."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset

from dicomflow.dicom.keys import shorten
from dicomflow.errors import DicomflowError
from dicomflow.net import storage as status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Screen:
    """A pipeline's ``filter(dataset) -> bool``, asked before an instance is kept: an
    instance it does not admit is discarded and answered with ``discarded_status``; one
    it raises on is refused (never kept without the filter's consent)."""

    admit: Callable[[Dataset], bool]
    discarded_status: int = status.SUCCESS

    def admits(self, dataset: Dataset, uid: str) -> bool:
        try:
            admitted = bool(self.admit(dataset))
        except Exception as exc:
            raise DicomflowError(f"Instance {shorten(uid)}: filter() raised {exc!r}.") from exc
        if not admitted:
            logger.info("instance %s did not pass the pipeline's filter(); not kept", shorten(uid))
        return admitted
