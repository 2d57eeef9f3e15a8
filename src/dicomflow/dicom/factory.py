"""Synthetic CT instances for tests, the demo and benchmarks.

- :func:`make_ct_series` -- a series of valid CT Image Storage instances holding
  a deterministic phantom (an elliptic body with a bony sphere, plus noise).
- :func:`write_series` -- write instances as DICOM Part-10 files.
- :func:`make_dataset` -- one small CT instance with attributes overridden by
  keyword, for tests with hostile values.

Caller-supplied values are stored without VR validation, so ``"../x"`` or a
64 kB PatientID can be used to test the code that must withstand them.
"""

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import DSfloat

from dicomflow.errors import FactoryError

PIXEL_SPACING = 0.5
RESCALE_INTERCEPT = -1024
_MAX_STORED = 4095  # BitsStored 12
_AIR, _TISSUE, _BONE, _NOISE_SD = -1000.0, 40.0, 1000.0, 10.0


def make_ct_series(
    count: int,
    *,
    rows: int = 64,
    columns: int = 64,
    patient_id: str = "DEMO001",
    patient_name: str = "Demo^Patient",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    modality: str = "CT",
    slice_thickness: float = 1.0,
    seed: int = 0,
) -> list[Dataset]:
    """Return ``count`` CT Image Storage instances of one series, in slice order.

    Slices step by ``slice_thickness`` mm along z; InstanceNumber counts from 1.
    Pixel values are uint16 (12 bits stored) with RescaleIntercept -1024, so
    they read as Hounsfield units. Pixel content depends only on ``seed``,
    ``count``, ``rows``, ``columns`` and the slice index; UIDs are freshly
    generated unless given.
    ``modality`` only sets Modality (the SOP Class stays CT Image Storage).

    Raises:
        FactoryError: if ``count`` is negative or ``rows``/``columns`` not positive.
    """
    _check_size("count", count, minimum=0)
    _check_size("rows", rows, minimum=1)
    _check_size("columns", columns, minimum=1)
    uids = (study_instance_uid or generate_uid(), series_instance_uid or generate_uid())
    template = _series_template(rows, columns, patient_id, patient_name, modality, *uids)
    template.SliceThickness = DSfloat(slice_thickness, auto_format=True)
    phantom = _Phantom(rows, columns, count, seed)
    return [_instance(template, index, slice_thickness, phantom) for index in range(count)]


def _check_size(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise FactoryError(f"{name} is {value}; expected at least {minimum}.")


def _series_template(
    rows: int,
    columns: int,
    patient_id: str,
    patient_name: str,
    modality: str,
    study_instance_uid: str,
    series_instance_uid: str,
) -> Dataset:
    """Return the attributes shared by every instance of the series."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = ""
    ds.Manufacturer = "dicomflow"
    ds.ReferringPhysicianName = ""
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.KVP = 120
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [PIXEL_SPACING, PIXEL_SPACING]
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    _set_pixel_module(ds, rows, columns)
    for keyword, value in (
        ("PatientID", patient_id),
        ("PatientName", patient_name),
        ("Modality", modality),
        ("StudyInstanceUID", study_instance_uid),
        ("SeriesInstanceUID", series_instance_uid),
    ):
        _put(ds, keyword, value)
    return ds


def _set_pixel_module(ds: Dataset, rows: int, columns: int) -> None:
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0


def _instance(
    template: Dataset, index: int, slice_thickness: float, phantom: "_Phantom"
) -> Dataset:
    ds = copy.deepcopy(template)
    ds.SOPInstanceUID = generate_uid()
    ds.InstanceNumber = index + 1
    origin = [-ds.Columns * PIXEL_SPACING / 2, -ds.Rows * PIXEL_SPACING / 2]
    z = index * slice_thickness
    ds.ImagePositionPatient = [DSfloat(value, auto_format=True) for value in (*origin, z)]
    ds.PixelData = phantom.slice(index).tobytes()
    ds.file_meta = _file_meta(ds)
    return ds


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    _put(meta, "MediaStorageSOPClassUID", ds.SOPClassUID)
    _put(meta, "MediaStorageSOPInstanceUID", ds.SOPInstanceUID)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


class _Phantom:
    """Slices of an elliptic body (soft tissue) holding a sphere (bone), plus noise."""

    def __init__(self, rows: int, columns: int, count: int, seed: int) -> None:
        v = (np.arange(rows) + 0.5) / rows * 2 - 1
        u = (np.arange(columns) + 0.5) / columns * 2 - 1
        self._radius2 = (u[np.newaxis, :] ** 2 + v[:, np.newaxis] ** 2).astype(np.float32)
        self._body = (u[np.newaxis, :] / 0.8) ** 2 + (v[:, np.newaxis] / 0.6) ** 2 <= 1
        self._count = count
        self._seed = seed

    def slice(self, index: int) -> npt.NDArray[np.uint16]:
        """Return the stored (uint16) values of slice ``index``."""
        w = (index + 0.5) / self._count * 2 - 1
        hu = np.where(self._body, np.float32(_TISSUE), np.float32(_AIR))
        hu[self._radius2 + w**2 <= 0.4**2] = _BONE
        rng = np.random.default_rng([self._seed, index])
        hu += rng.standard_normal(hu.shape, dtype=np.float32) * np.float32(_NOISE_SD)
        stored = np.rint(hu - RESCALE_INTERCEPT)
        clipped: npt.NDArray[np.uint16] = np.clip(stored, 0, _MAX_STORED).astype(np.uint16)
        return clipped


def write_series(datasets: Iterable[Dataset], directory: str | os.PathLike[str]) -> list[Path]:
    """Write each dataset as a Part-10 file ``{index:05d}.dcm`` in ``directory``.

    The directory (and its parents) is created if needed. Returns the paths in
    the order of ``datasets``.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_dataset(**keywords: Any) -> Dataset:
    """Return one minimal valid 16x16 CT instance with attributes overridden by keyword.

    Values are stored as given, without VR validation (``PatientID="../x"``);
    a str that pydicom cannot convert (``RescaleSlope="abc"``) is kept raw.
    A value of ``None`` removes the attribute; use ``""`` for an empty one.
    SOPClassUID and SOPInstanceUID overrides are mirrored into the file meta.

    Raises:
        FactoryError: if a keyword is not a DICOM keyword or cannot hold its value.
    """
    ds = make_ct_series(1, rows=16, columns=16)[0]
    for keyword, value in keywords.items():
        if value is None:
            ds.pop(_keyword_tag(keyword), None)
        else:
            _put(ds, keyword, value)
    for keyword, meta_keyword in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        if keyword in keywords and keywords[keyword] is not None:
            _put(ds.file_meta, meta_keyword, keywords[keyword])
    return ds


def _put(ds: Dataset, keyword: str, value: Any) -> None:
    """Set ``ds.<keyword>`` to ``value`` without VR validation (hostile values allowed).

    A str or bytes value pydicom refuses to convert (``RescaleSlope="abc"``) is
    stored as a raw element, as if read from a file holding it.
    """
    tag = _keyword_tag(keyword)
    vr = dictionary_VR(tag)
    try:
        ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)
    except (ValueError, TypeError, OverflowError) as exc:
        if not isinstance(value, str | bytes):
            raise FactoryError(f"{keyword} cannot hold {value!r}: {exc}") from exc
        ds[tag] = _raw_element(tag, vr, value)


def _raw_element(tag: int, vr: str, value: str | bytes) -> RawDataElement:
    data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    data += b" " * (len(data) % 2)
    return RawDataElement(Tag(tag), vr, len(data), data, 0, False, True)


def _keyword_tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise FactoryError(f'"{keyword}" is not a DICOM keyword.')
    return tag
