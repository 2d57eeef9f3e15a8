"""The import path ``dicomnode.lib.io`` of the pipeline library: names only (see
:mod:`dicomflow.dicom.files`, :mod:`dicomflow.dicom.private_tags` and
:mod:`dicomflow.node.folders`)."""

from dicomflow.dicom.files import (
    DicomLazyIterator,
    discover_files,
    load_dicom,
    load_dicoms,
    save_dicom,
)
from dicomflow.dicom.private_tags import apply_private_tags, update_private_tags
from dicomflow.node.folders import Directory, File, IOObject, TemporaryWorkingDirectory

__all__ = [
    "DicomLazyIterator",
    "Directory",
    "File",
    "IOObject",
    "TemporaryWorkingDirectory",
    "apply_private_tags",
    "discover_files",
    "load_dicom",
    "load_dicoms",
    "save_dicom",
    "update_private_tags",
]
