"""``cloud_optimized_dicom.cod_object``: the original import path of :class:`CODObject`."""

from dicomflow.cod.codobject import CODObject

__all__ = ["CODObject"]
