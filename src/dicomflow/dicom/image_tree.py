"""Image trees: instances grouped as patient / study / series / instance.

:class:`DicomTree` holds any instances; :class:`PatientTree`,
:class:`StudyTree` and :class:`SeriesTree` hold one patient, study or series
and refuse an instance of another (``KeyError``) or one lacking the attribute
they group by (``ValueError``). Every tree counts its instances in ``images``,
iterates over its instances, and can ``map`` a function over them,
``trim_tree`` them with a filter, ``save_tree`` them to disk or ``discover``
them on disk.

Paths written by :meth:`ImageTreeInterface.save_tree` never contain a raw DICOM
value: instance files and study/series directories are named by validated
UIDs, patient directories by a hash of the PatientID
(:func:`dicomflow.dicom.keys.value_key`).
"""

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pydicom import DataElement, Dataset, dcmread
from pydicom.errors import InvalidDicomError

from dicomflow.dicom.identity_mapping import IdentityMapping
from dicomflow.dicom.keys import instance_file_name, uid_key, value_key
from dicomflow.errors import InvalidTreeNode

logger = logging.getLogger(__name__)

_Tree = TypeVar("_Tree", bound="ImageTreeInterface")

__all__ = [
    "DicomTree",
    "IdentityMapping",
    "ImageTreeInterface",
    "PatientTree",
    "SeriesTree",
    "StudyTree",
]


class ImageTreeInterface(ABC):
    """A tree node whose leaves are datasets; subclasses define ``add_image``."""

    def __init__(self, dcm: Iterable[Dataset] | Dataset | None = None) -> None:
        self.__data: dict[str, Dataset | ImageTreeInterface] = {}
        self.images: int = 0
        if isinstance(dcm, Dataset):
            self.add_image(dcm)
        elif dcm is not None:
            self.add_images(dcm)

    @abstractmethod
    def add_image(self, dicom: Dataset) -> int:
        """Add one instance; return the number added (1)."""

    def add_images(self, listOfDicom: Iterable[Dataset]) -> int:
        return sum(self.add_image(dicom) for dicom in listOfDicom)

    @property
    def data(self) -> dict[str, "Dataset | ImageTreeInterface"]:
        """The children of this node: subtrees, or datasets in a :class:`SeriesTree`."""
        return self.__data

    @data.setter
    def data(self, value: dict[str, "Dataset | ImageTreeInterface"]) -> None:
        self.__data = value

    def __getitem__(self, key: str) -> "Dataset | ImageTreeInterface":
        return self.__data[str(key)]

    def __setitem__(self, key: str, entry: "Dataset | ImageTreeInterface") -> None:
        if not isinstance(key, str):
            raise TypeError(f"An image tree key must be a string; got {type(key).__name__}.")
        if not isinstance(entry, Dataset | ImageTreeInterface):
            raise TypeError(
                f"An image tree entry must be a Dataset or an image tree; "
                f"got {type(entry).__name__}."
            )
        self.__data[str(key)] = entry

    def __delitem__(self, key: str) -> None:
        entry = self[key]
        self.images -= 1 if isinstance(entry, Dataset) else entry.images
        del self.__data[str(key)]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, DataElement):
            key = key.value
        return str(key) in self.__data

    def __iter__(self) -> Iterator[Dataset]:
        for entry in self.__data.values():
            if isinstance(entry, ImageTreeInterface):
                yield from entry
            else:
                yield entry

    def __len__(self) -> int:
        return self.images

    def __repr__(self) -> str:
        return str(self)

    def _children(self, kind: type[_Tree]) -> Iterator[_Tree]:
        for entry in self.__data.values():
            if not isinstance(entry, kind):
                raise InvalidTreeNode(
                    f"{type(self).__name__} holds a {type(entry).__name__}; "
                    f"expected a {kind.__name__}."
                )
            yield entry

    def _subtree(self, key: str, kind: type[_Tree]) -> _Tree | None:
        entry = self.__data.get(key)
        if entry is not None and not isinstance(entry, kind):
            raise InvalidTreeNode(
                f"{type(self).__name__} holds a {type(entry).__name__} under {key}; "
                f"expected a {kind.__name__}."
            )
        return entry

    def map(
        self,
        func: Callable[[Dataset], Any],
        UIDMapping: IdentityMapping | None = None,
    ) -> dict[str, Any]:
        """Call ``func`` on every instance; return its non-``None`` results by (mapped) key.

        With ``UIDMapping``, keys that it maps are renamed to their replacements.
        """
        mapping = UIDMapping if UIDMapping is not None else IdentityMapping()
        results: dict[str, Any] = {}
        renamed: dict[str, Dataset | ImageTreeInterface] = {}
        for key, entry in self.__data.items():
            new_key = mapping.get_mapping(key) or key
            if isinstance(entry, ImageTreeInterface):
                results.update(entry.map(func, mapping))
            elif (result := func(entry)) is not None:
                results[new_key] = result
            renamed[new_key] = entry
        self.__data = renamed
        return results

    def trim_tree(self, filter_function: Callable[[Dataset], bool]) -> int:
        """Remove every instance for which ``filter_function`` is false; return how many.

        Subtrees left without instances are removed.
        """
        trimmed = 0
        kept: dict[str, Dataset | ImageTreeInterface] = {}
        for key, entry in self.__data.items():
            if isinstance(entry, ImageTreeInterface):
                removed = entry.trim_tree(filter_function)
                if entry.images > 0:
                    kept[key] = entry
            else:
                removed = 0 if filter_function(entry) else 1
                if not removed:
                    kept[key] = entry
            trimmed += removed
        self.images -= trimmed
        self.__data = kept
        return trimmed

    def discover(self, path: Path) -> None:
        """Add every DICOM file under ``path`` (a file or a directory, searched recursively).

        Files that are not DICOM are logged and skipped; symbolic links to
        directories are not followed.
        """
        if path.is_file():
            try:
                dataset = dcmread(path)
            except (InvalidDicomError, OSError) as exc:
                logger.error("%s is not a readable DICOM file, skipped: %s", path, exc)
                return
            self.add_image(dataset)
        elif path.is_dir() and not path.is_symlink():
            for child in sorted(path.iterdir()):
                self.discover(child)

    def _child_directory(self, key: str) -> str:
        return uid_key(key, "UID")

    def save_tree(self, target: Path) -> None:
        """Write the tree under ``target``: one child is written at ``target`` itself,
        several go in a new directory ``target`` (one sub-path per child)."""
        subtrees = {key: _as_tree(entry) for key, entry in self.__data.items()}
        if len(subtrees) == 1:
            next(iter(subtrees.values())).save_tree(target)
            return
        target.mkdir()
        for key, subtree in subtrees.items():
            subtree.save_tree(target / self._child_directory(key))


def _as_tree(entry: "Dataset | ImageTreeInterface") -> "ImageTreeInterface":
    if not isinstance(entry, ImageTreeInterface):
        raise InvalidTreeNode("Only a SeriesTree holds datasets; found one in a higher tree.")
    return entry


def _write_instance(dataset: Dataset, target: Path) -> None:
    dataset.save_as(target, enforce_file_format=True)


class SeriesTree(ImageTreeInterface):
    """The instances of one series, by SOPInstanceUID."""

    def __init__(self, dcm: Iterable[Dataset] | Dataset | None = None) -> None:
        self.series_instance_UID: str | None = None
        self.series_description = "Tree of Undefined Series"
        super().__init__(dcm)

    def add_image(self, dicom: Dataset) -> int:
        _require(dicom, "SeriesInstanceUID", "SOPInstanceUID")
        series = str(dicom.SeriesInstanceUID)
        if self.series_instance_UID is None:
            self.series_instance_UID = series
            if "SeriesDescription" in dicom:
                self.series_description = f"Tree of {dicom.SeriesDescription}"
        elif self.series_instance_UID != series:
            raise KeyError(f"Instance of series {series} added to the tree of another series.")
        key = str(dicom.SOPInstanceUID)
        if key in self.data:
            raise ValueError(f"Instance {key} is already in the series tree.")
        self[key] = dicom
        self.images += 1
        return 1

    def save_tree(self, target: Path) -> None:
        """Write one instance to ``target`` (or into it if it is a directory);
        several instances into a new directory ``target``, as ``<SOPInstanceUID>.dcm``."""
        if self.images == 1:
            dicom = next(iter(self))
            if target.is_dir():
                target = target / instance_file_name(str(dicom.SOPInstanceUID))
            _write_instance(dicom, target)
            return
        target.mkdir()
        for dicom in self:
            _write_instance(dicom, target / instance_file_name(str(dicom.SOPInstanceUID)))

    def __str__(self) -> str:
        return f"{self.series_description} with {self.images} images"


class StudyTree(ImageTreeInterface):
    """The series of one study, by SeriesInstanceUID."""

    StudyDescription: str = "Undefined Study Description"

    def add_image(self, dicom: Dataset) -> int:
        _require(dicom, "StudyInstanceUID", "SeriesInstanceUID")
        study = str(dicom.StudyInstanceUID)
        if not hasattr(self, "StudyInstanceUID"):
            self.StudyInstanceUID = study
            if "StudyDescription" in dicom:
                self.StudyDescription = f"Tree of {dicom.StudyDescription}"
        elif self.StudyInstanceUID != study:
            raise KeyError(f"Instance of study {study} added to the tree of another study.")
        key = str(dicom.SeriesInstanceUID)
        series = self._subtree(key, SeriesTree)
        if series is None:
            self[key] = SeriesTree(dicom)
        else:
            series.add_image(dicom)
        self.images += 1
        return 1

    def series(self) -> Iterator[SeriesTree]:
        return self._children(SeriesTree)

    def num_series(self) -> int:
        return len(self.data)

    def __str__(self) -> str:
        lines = "".join(f"      {series}\n" for series in self.data.values())
        return f"{self.StudyDescription} with {self.images} images with Series:\n{lines}"


class PatientTree(ImageTreeInterface):
    """The studies of one patient, by StudyInstanceUID."""

    def __init__(self, dcm: Iterable[Dataset] | Dataset | None = None) -> None:
        self.tree_name = "Unknown Tree"
        super().__init__(dcm)

    def add_image(self, dicom: Dataset) -> int:
        _require(dicom, "StudyInstanceUID", "PatientID")
        if not hasattr(self, "PatientID"):
            self.PatientID = dicom.PatientID
            if "PatientName" in dicom:
                self.tree_name = f"StudyTree of {dicom.PatientName}"
        elif self.PatientID != dicom.PatientID:
            raise KeyError("Instance of another patient added to a patient tree.")
        key = str(dicom.StudyInstanceUID)
        study = self._subtree(key, StudyTree)
        if study is None:
            self[key] = StudyTree(dicom)
        else:
            study.add_image(dicom)
        self.images += 1
        return 1

    def studies(self) -> Iterator[StudyTree]:
        return self._children(StudyTree)

    def series(self) -> Iterator[SeriesTree]:
        for study in self.studies():
            yield from study.series()

    def num_studies(self) -> int:
        return len(self.data)

    def num_series(self) -> int:
        return sum(study.num_series() for study in self.studies())

    def __str__(self) -> str:
        lines = "".join(f"    {study}" for study in self.data.values())
        return f"Patient {self.tree_name} with {self.images} images\n{lines}"


class DicomTree(ImageTreeInterface):
    """Instances of any patients, by PatientID."""

    def add_image(self, dicom: Dataset) -> int:
        _require(dicom, "PatientID")
        key = str(dicom.PatientID)
        patient = self._subtree(key, PatientTree)
        if patient is None:
            self[key] = PatientTree(dicom)
        else:
            patient.add_image(dicom)
        self.images += 1
        return 1

    def _child_directory(self, key: str) -> str:
        return value_key(key)

    def patients(self) -> Iterator[PatientTree]:
        return self._children(PatientTree)

    def studies(self) -> Iterator[StudyTree]:
        for patient in self.patients():
            yield from patient.studies()

    def series(self) -> Iterator[SeriesTree]:
        for patient in self.patients():
            yield from patient.series()

    def num_patients(self) -> int:
        return len(self.data)

    def num_studies(self) -> int:
        return sum(patient.num_studies() for patient in self.patients())

    def num_series(self) -> int:
        return sum(patient.num_series() for patient in self.patients())

    def __str__(self) -> str:
        lines = "".join(f"  {patient}" for patient in self.data.values())
        return f"Dicom Tree with {self.images} images\n{lines}"


def _require(dicom: Dataset, *keywords: str) -> None:
    for keyword in keywords:
        if keyword not in dicom:
            raise ValueError(f"The instance has no {keyword}; an image tree needs it.")
