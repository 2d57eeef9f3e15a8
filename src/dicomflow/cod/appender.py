"""``cloud_optimized_dicom.appender``: ``AppendResult`` and ``CODAppender``.

``CODAppender(cod).append(...)`` is ``cod.append(...)`` (the original library made
one appender per call; dicomflow appends in :class:`~dicomflow.cod.CODObject`).
"""

from dicomflow.cod.append_check import AppendResult
from dicomflow.cod.codobject import CODObject
from dicomflow.cod.instance import Instance


class CODAppender:
    """Append instances to one CODObject (as a dirty change if it holds no lock)."""

    def __init__(self, cod_object: CODObject) -> None:
        self.cod_object = cod_object
        self.append_result = AppendResult()

    def append(
        self,
        instances: list[Instance],
        delete_local_origin: bool = False,
        max_instance_size: float = 10,
        max_series_size: float = 100,
    ) -> AppendResult:
        """Append ``instances``; see :meth:`dicomflow.cod.CODObject.append`."""
        self.append_result = self.cod_object.append(
            instances,
            max_instance_size=max_instance_size,
            max_series_size=max_series_size,
            delete_local_origin=delete_local_origin,
            dirty=not self.cod_object.lock,
        )
        return self.append_result


__all__ = ["AppendResult", "CODAppender"]
