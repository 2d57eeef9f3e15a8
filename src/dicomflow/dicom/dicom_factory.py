"""The pipeline library's ``dicom.dicom_factory`` import path.

Names only: blueprints live in :mod:`dicomflow.dicom.blueprint`, virtual
elements in :mod:`dicomflow.dicom.virtual_element`, the factory in
:mod:`dicomflow.dicom.derived_series`.
"""

from dicomflow.dicom.blueprint import Blueprint
from dicomflow.dicom.derived_series import DicomFactory
from dicomflow.dicom.series import DicomSeries
from dicomflow.dicom.virtual_element import (
    CopyElement,
    CopyOrElseElement,
    DiscardElement,
    FunctionalElement,
    IndexElement,
    InstanceCopyElement,
    InstanceEnvironment,
    InstanceVirtualElement,
    KeyedIndexElement,
    SequenceElement,
    SeriesElement,
    StaticElement,
    TagType,
    VirtualElement,
    get_pivot,
)

__all__ = [
    "Blueprint",
    "CopyElement",
    "CopyOrElseElement",
    "DicomFactory",
    "DicomSeries",
    "DiscardElement",
    "FunctionalElement",
    "IndexElement",
    "InstanceCopyElement",
    "InstanceEnvironment",
    "InstanceVirtualElement",
    "KeyedIndexElement",
    "SequenceElement",
    "SeriesElement",
    "StaticElement",
    "TagType",
    "VirtualElement",
    "get_pivot",
]
