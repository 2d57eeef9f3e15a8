"""Part-10 files for pipeline code: load one, load a folder, save one.

Paths built from a dataset's values go through :func:`uid_layout`, which takes
only valid UIDs (:mod:`dicomflow.dicom.keys`).
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
from pydicom import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian

from dicomflow.dicom.keys import instance_file_name, uid_name

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def uid_layout(dataset: Dataset) -> Path:
    """``{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm`` of ``dataset``.

    Raises:
        InvalidKeyError: naming the attribute whose value is not a valid DICOM UID.
    """
    study = uid_name(str(dataset.get("StudyInstanceUID", "")), "StudyInstanceUID")
    series = uid_name(str(dataset.get("SeriesInstanceUID", "")), "SeriesInstanceUID")
    return Path(study, series, instance_file_name(str(dataset.get("SOPInstanceUID", ""))))


def discover_files(source: PathLike) -> list[Path]:
    """Every file at or beneath ``source``, hidden ones (``.name``) left out."""
    stack, files = [Path(source)], []
    while stack:
        path = stack.pop()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            stack.extend(sub for sub in path.iterdir() if not sub.name.startswith("."))
    return files


def load_dicom(dicom_path: PathLike) -> Dataset:
    """Read one Part-10 file.

    Raises:
        FileNotFoundError: if there is nothing at ``dicom_path``.
        IsADirectoryError: if it is a folder (use :func:`load_dicoms`).
        pydicom.errors.InvalidDicomError: if it is not a DICOM file.
    """
    path = Path(dicom_path)
    if not path.exists():
        raise FileNotFoundError(f'There is no file "{path}".')
    if path.is_dir():
        raise IsADirectoryError(f'"{path}" is a folder; load_dicoms() loads a folder.')
    return pydicom.dcmread(path)


def load_dicoms(dicom_path: PathLike) -> list[Dataset]:
    """Every DICOM file at or beneath ``dicom_path`` (others skipped), sorted by
    InstanceNumber (those without first).

    Raises:
        FileNotFoundError: if there is nothing at ``dicom_path``.
    """
    path = Path(dicom_path)
    if not path.exists():
        raise FileNotFoundError(f'There is no file or folder "{path}".')
    datasets: list[Dataset] = []
    for file in discover_files(path):
        try:
            datasets.append(pydicom.dcmread(file))
        except (InvalidDicomError, OSError, ValueError) as exc:
            logger.debug("%s is skipped: %s", file, exc)
    datasets.sort(key=lambda ds: ds.get("InstanceNumber") or -1)
    return datasets


def save_dicom(dicom_path: PathLike, dicom: Dataset, overwrite: bool = True) -> Path:
    """Save ``dicom`` as a Part-10 file at ``dicom_path``, making its folders; return the path.

    Without a transfer syntax in its file meta, explicit VR little endian is used.
    If ``dicom_path`` is an existing folder, the file goes to
    ``dicom_path/`` :func:`uid_layout`.

    Raises:
        FileExistsError: if the file exists and ``overwrite`` is false.
        InvalidKeyError: if a folder was given and a UID of ``dicom`` is not valid.
    """
    path = Path(dicom_path).absolute()
    if path.is_dir():
        path = path / uid_layout(dicom)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = getattr(dicom, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        dicom.file_meta = meta if meta is not None else FileMetaDataset()
        dicom.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dicom.save_as(path, enforce_file_format=True, overwrite=overwrite)
    return path


class DicomLazyIterator:
    """The datasets of the ``*.{dicom_fileheader}`` files beneath ``path``, read one at a
    time as they are iterated."""

    def __init__(self, path: PathLike, dicom_fileheader: str = "dcm") -> None:
        self._path = Path(path)
        self._dicom_fileheader = dicom_fileheader

    def __iter__(self) -> Iterator[Dataset]:
        for sub_path in sorted(self._path.glob(f"**/*.{self._dicom_fileheader}")):
            yield load_dicom(sub_path)
