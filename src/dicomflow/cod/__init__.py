"""Cloud Optimized DICOM: series stored as one tar plus a metadata JSON.

See :mod:`dicomflow.cod.metadata` for the metadata format (``end_byte`` is
exclusive) and :mod:`dicomflow.cod.locker` for the locking guarantees.
"""

from dicomflow.cod.append_check import AppendResult
from dicomflow.cod.catalog import list_series, list_studies
from dicomflow.cod.codobject import CODObject
from dicomflow.cod.hints import Hints
from dicomflow.cod.instance import Instance

__all__ = ["AppendResult", "CODObject", "Hints", "Instance", "list_series", "list_studies"]
