"""The import path ``dicomnode.lib.io`` of the pipeline library: names only
(see :mod:`dicomflow.dicom.files`)."""

from dicomflow.dicom.files import (
    DicomLazyIterator,
    discover_files,
    load_dicom,
    load_dicoms,
    save_dicom,
)

__all__ = ["DicomLazyIterator", "discover_files", "load_dicom", "load_dicoms", "save_dicom"]
