"""The pipeline library's ``dicom.series`` import path: :class:`DicomSeries` only."""

from dicomflow.dicom.dicom_series import DicomSeries

__all__ = ["DicomSeries"]
