"""Grinder classes: set an instance as an input's ``image_grinder``.

A grinder is called with the instances of one input (any iterable of
datasets; the input itself can be iterated again) and returns what
``process()`` receives for that input:

- :class:`IdentityGrinder` -- the iterable itself, untouched.
- :class:`ListGrinder` -- a ``list`` in arrival order.
- :class:`TagGrinder` -- ``{tag: value}`` read from the first instance.
- :class:`ManyGrinder` -- a list with the result of each of its grinders.
- :class:`DicomTreeGrinder` -- a :class:`~dicomflow.dicom.image_tree.DicomTree`.
- :class:`SeriesGrinder` -- a :class:`~dicomflow.dicom.series.DicomSeries`.
- :class:`NumpyGrinder` -- a (slices, rows, columns) array sorted by
  InstanceNumber, in the stored type (``uint16``, ``int16``, ``float32`` Float
  Pixel Data, ``float64`` Double Float Pixel Data), or ``float64`` when the
  first instance carries RescaleSlope and RescaleIntercept.
- :class:`NiftiGrinder` -- a ``nibabel`` NIfTI-1 image (``dicomflow[nifti]``).
- :class:`RTStructGrinder` -- an ``rt_utils.RTStruct`` (``dicomflow[rtstruct]``).

The function grinders of :mod:`dicomflow.dicom.grinders` remain; they sort
series in space rather than by InstanceNumber.
"""

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy.typing as npt
from pydicom import Dataset
from pydicom.uid import RTStructureSetStorage

from dicomflow.dicom.image_tree import DicomTree
from dicomflow.dicom.keys import value_key
from dicomflow.dicom.nifti import require_nibabel, series_to_nifti
from dicomflow.dicom.series import DicomSeries
from dicomflow.dicom.tags import TagLike, parse_tags
from dicomflow.dicom.volume import has_rescale, safe_uid, stack_frames, stored_dtype
from dicomflow.errors import (
    GrinderError,
    IncorrectlyConfigured,
    InvalidDataset,
    MissingOptionalDependency,
    MissingPivotDataset,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DicomTreeGrinder",
    "Grinder",
    "IdentityGrinder",
    "ListGrinder",
    "ManyGrinder",
    "NiftiGrinder",
    "NumpyGrinder",
    "RTStructGrinder",
    "SeriesGrinder",
    "TagGrinder",
]


class Grinder(ABC):
    """Turns the instances of an input into what ``process()`` receives."""

    @abstractmethod
    def __call__(self, image_generator: Iterable[Dataset]) -> Any:
        """Grind ``image_generator``."""


class IdentityGrinder(Grinder):
    def __call__(self, image_generator: Iterable[Dataset]) -> Iterable[Dataset]:
        """Return ``image_generator`` itself; no instance is read."""
        return image_generator


class ListGrinder(Grinder):
    def __call__(self, image_generator: Iterable[Dataset]) -> list[Dataset]:
        """Return the instances as a new list, in arrival order."""
        return list(image_generator)


class DicomTreeGrinder(Grinder):
    def __call__(self, image_generator: Iterable[Dataset]) -> DicomTree:
        """Return the instances as a patient / study / series tree.

        Each instance needs PatientID, StudyInstanceUID, SeriesInstanceUID and
        SOPInstanceUID (``ValueError`` otherwise).
        """
        return DicomTree(image_generator)


class SeriesGrinder(Grinder):
    def __call__(self, image_generator: Iterable[Dataset]) -> DicomSeries:
        """Return the instances of one series as a :class:`DicomSeries`."""
        return DicomSeries(list(image_generator))


class TagGrinder(Grinder):
    """Read ``tag_list`` from the first instance (the tags are assumed shared by the input)."""

    def __init__(self, tag_list: Iterable[TagLike], optional: bool = False) -> None:
        self.tag_list = list(tag_list)
        self.optional = optional
        self._tags = parse_tags(self.tag_list)

    def __call__(self, image_generator: Iterable[Dataset]) -> dict[Any, Any]:
        """Return ``{tag: value}`` with each tag as given in ``tag_list``.

        Raises:
            MissingPivotDataset: (a ``ValueError``) if there is no instance.
            InvalidDataset: if a tag is missing and the grinder is not ``optional``;
                with ``optional`` a missing tag is left out of the result.
        """
        pivot = next(iter(image_generator), None)
        if pivot is None:
            raise MissingPivotDataset("TagGrinder received no instances; it reads the first one.")
        values: dict[Any, Any] = {}
        for given, tag in zip(self.tag_list, self._tags, strict=True):
            if tag in pivot:
                values[given] = pivot[tag].value
            elif not self.optional:
                raise InvalidDataset(f"Instance {safe_uid(pivot)} has no tag {tag}.")
        return values


class ManyGrinder(Grinder):
    """Apply several grinders to the same instances; return their results in order."""

    def __init__(self, *grinders: Grinder) -> None:
        self.grinders = list(grinders)

    def __call__(self, image_generator: Iterable[Dataset]) -> list[Any]:
        """Return ``[grinder(instances) for grinder in grinders]``.

        A one-shot iterator is read into a list first, so every grinder sees every
        instance; a re-iterable input (a list, an input) is passed on as it is.
        """
        if isinstance(image_generator, Iterator):
            image_generator = list(image_generator)
        return [grinder(image_generator) for grinder in self.grinders]


class NumpyGrinder(Grinder):
    """Stack the instances into one (slices, rows, columns) array (see the module docs)."""

    def __call__(self, image_generator: Iterable[Dataset]) -> npt.NDArray[Any]:
        """Return the volume, sorted by InstanceNumber when the first instance has one.

        Raises:
            MissingPivotDataset: (a ``ValueError``) if there is no instance.
            NotImplementedError: for colour images (SamplesPerPixel 3).
            InvalidDataset: for any other SamplesPerPixel than 1, BitsAllocated
                without a matching integer type, or pixel data that cannot be
                decoded or stacked.
        """
        datasets = list(image_generator)
        if not datasets:
            raise MissingPivotDataset("NumpyGrinder received no instances; a volume needs one.")
        _sort_by_instance_number(datasets)
        pivot = datasets[0]
        _check_samples(pivot)
        dtype = stored_dtype(pivot)
        if dtype is None:
            raise InvalidDataset(
                f"Instance {safe_uid(pivot)} has BitsAllocated {pivot.get('BitsAllocated')}; "
                "expected 8, 16, 32 or 64."
            )
        try:
            return stack_frames(datasets, rescale=has_rescale(pivot), dtype=dtype)
        except GrinderError as exc:
            raise InvalidDataset(str(exc)) from exc


def _sort_by_instance_number(datasets: list[Dataset]) -> None:
    if "InstanceNumber" not in datasets[0]:
        logger.warning("Instance Number not present in dataset, arbitrary ordering of datasets")
        return
    for dataset in datasets:
        if not isinstance(dataset.get("InstanceNumber"), int):
            raise InvalidDataset(
                f"Instance {safe_uid(dataset)} has no usable InstanceNumber "
                f'("{dataset.get("InstanceNumber")}"); the first instance has one.'
            )
    datasets.sort(key=lambda dataset: int(dataset.InstanceNumber))


def _check_samples(pivot: Dataset) -> None:
    samples = pivot.get("SamplesPerPixel")
    if samples == 1:
        return
    if samples == 3:
        raise NotImplementedError("NumpyGrinder does not grind colour images (SamplesPerPixel 3).")
    if samples == 4:
        logger.error(
            "Dataset contains a retired value for Samples Per Pixel, which is not supported"
        )
    else:
        logger.error("Dataset contains a invalid value for Samples Per Pixel")
    raise InvalidDataset(f"Instance {safe_uid(pivot)} has SamplesPerPixel {samples}; expected 1.")


class NiftiGrinder(Grinder):
    """Convert one series to a NIfTI-1 image (needs ``pip install "dicomflow[nifti]"``)."""

    INCORRECTLY_CONFIGURED_ERROR_MESSAGE = (
        "To reorient a nifti you need define a valid Path for output_directory"
    )

    def __init__(self, output_directory: Path | None = None, reorient_nifti: bool = False) -> None:
        """Check the configuration and that nibabel is installed.

        With ``output_directory`` (created if absent) each image is also saved
        there as ``<hash of SeriesInstanceUID>.nii.gz``.

        Raises:
            IncorrectlyConfigured: if ``reorient_nifti`` is set without ``output_directory``.
            MissingOptionalDependency: if nibabel is not installed.
        """
        if reorient_nifti and output_directory is None:
            logger.error(self.INCORRECTLY_CONFIGURED_ERROR_MESSAGE)
            raise IncorrectlyConfigured(self.INCORRECTLY_CONFIGURED_ERROR_MESSAGE)
        require_nibabel("NiftiGrinder")
        if output_directory is not None:
            output_directory.mkdir(parents=True, exist_ok=True)
        self.output_directory = output_directory
        self.reorient_nifti = reorient_nifti

    def __call__(self, datasets: Iterable[Dataset]) -> Any:
        """Return the ``nibabel.Nifti1Image`` of the series (see :mod:`dicomflow.dicom.nifti`)."""
        instances = list(datasets)
        image = series_to_nifti(instances, reorient=self.reorient_nifti)
        if self.output_directory is not None:
            image.to_filename(self.output_directory / _nifti_file_name(instances))
        return image


def _nifti_file_name(instances: list[Dataset]) -> str:
    return f"{value_key(instances[0].get('SeriesInstanceUID'))}.nii.gz"


class RTStructGrinder(Grinder):
    """Pair one RT Structure Set with its image series (needs ``dicomflow[rtstruct]``)."""

    def __init__(self) -> None:
        if find_spec("rt_utils") is None:
            raise MissingOptionalDependency(
                "RTStructGrinder needs rt-utils, which is not installed; install it with: "
                'pip install "dicomflow[rtstruct]"'
            )

    def __call__(self, image_generator: Iterable[Dataset]) -> Any:
        """Return ``rt_utils.RTStruct(series, rt_struct)``.

        Raises:
            MissingPivotDataset: if there is no RT Structure Set instance.
            InvalidDataset: if there is more than one.
        """
        rt_struct: Dataset | None = None
        series: list[Dataset] = []
        for dataset in image_generator:
            if dataset.get("SOPClassUID") != RTStructureSetStorage:
                series.append(dataset)
            elif rt_struct is None:
                rt_struct = dataset
            else:
                raise InvalidDataset(
                    f"RTStructGrinder takes one RT Structure Set; got a second one, "
                    f"{safe_uid(dataset)}."
                )
        if rt_struct is None:
            raise MissingPivotDataset("RTStructGrinder received no RT Structure Set instance.")
        return import_module("rt_utils").RTStruct(series, rt_struct)
