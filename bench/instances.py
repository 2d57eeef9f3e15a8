"""Synthetic CT instances for the ingest benchmark, as Part-10 files.

Uses the shared factory (:mod:`dicomflow.dicom.factory`) when it is importable;
otherwise a minimal generator here (pydicom + numpy) makes equivalent files.
"""

from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(count: int, size: int, directory: Path) -> list[Path]:
    """Write ``count`` CT instances of ``size`` x ``size`` uint16 pixels into ``directory``."""
    try:
        from dicomflow.dicom.factory import make_ct_series, write_series
    except ImportError:
        return _write_own_series(count, size, directory)
    return write_series(make_ct_series(count, rows=size, columns=size), directory)


def _write_own_series(count: int, size: int, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        ds = _instance(study, series, index, size, rng)
        path = directory / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _instance(study: str, series: str, index: int, size: int, rng: np.random.Generator) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName, ds.Modality = "BENCH", "Bench^Patient", "CT"
    ds.InstanceNumber = index + 1
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds
