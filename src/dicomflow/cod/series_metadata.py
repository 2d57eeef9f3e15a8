"""``cloud_optimized_dicom.series_metadata``: the series metadata document.

``SeriesMetadata`` is :class:`dicomflow.cod.metadata.Document`: ``study_uid``,
``series_uid``, ``instances`` (SOPInstanceUID -> metadata record, a dict),
``thumbnail``, ``to_dict()`` and ``from_dict()``.
"""

from dicomflow.cod.metadata import Document as SeriesMetadata

__all__ = ["SeriesMetadata"]
