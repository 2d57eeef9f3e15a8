"""Building derived series and single instances from blueprints.

:class:`DicomFactory` turns a numpy volume (slices, rows, columns), a
:class:`~dicomflow.dicom.blueprint.Blueprint` and the parent series into a new
series: one dataset per slice, every blueprint element applied (shared ones
once, instance ones per slice), the slice stored as pixel data (see
:mod:`dicomflow.dicom.pixel_encoding` for the dtype rules) and the file meta
completed, so each dataset can be written or sent as it is.
"""

import logging
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import DataElement, Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from dicomflow.dicom.blueprint import Blueprint
from dicomflow.dicom.filemeta import make_meta
from dicomflow.dicom.pdf_report import encode_pdf
from dicomflow.dicom.pixel_encoding import store_image
from dicomflow.dicom.series import DicomSeries
from dicomflow.dicom.virtual_element import (
    InstanceCopyElement,
    InstanceEnvironment,
    InstanceVirtualElement,
    VirtualElement,
)
from dicomflow.errors import ConstructionFailure

logger = logging.getLogger(__name__)

ParentSeries = DicomSeries | Sequence[Dataset]


class DicomFactory:
    """Builds series and instances from blueprints; settings for rescaled images."""

    class PixelRepresentation(Enum):
        UNSIGNED = 0
        TWOS_COMPLIMENT = 1

    class PhotometricInterpretation(Enum):
        MONOCHROME_WHITE = "MONOCHROME1"
        MONOCHROME_BLACK = "MONOCHROME2"

    def __init__(self) -> None:
        self.default_bits_stored = 16
        self.default_bits_allocated = 16
        self.default_pixel_representation = DicomFactory.PixelRepresentation.UNSIGNED
        self.default_photometric_interpretation = (
            DicomFactory.PhotometricInterpretation.MONOCHROME_BLACK
        )

    def store_image_in_dataset(self, dataset: Dataset, image: npt.ArrayLike) -> None:
        """Set the Image Pixel module of ``dataset`` to hold the 2-D ``image``.

        Raises:
            ConstructionFailure: (a ``ValueError``) if the image is not a finite 2-D
                numeric array.
        """
        if "SOPClassUID" not in dataset:
            dataset.SOPClassUID = SecondaryCaptureImageStorage
        store_image(
            dataset,
            image,
            bits_stored=self.default_bits_stored,
            bits_allocated=self.default_bits_allocated,
            photometric_interpretation=self.default_photometric_interpretation.value,
        )

    def build_series(
        self,
        image: Any,
        blueprint: Blueprint,
        parent_series: ParentSeries,
        kwargs: dict[Any, Any] | None = None,
    ) -> DicomSeries:
        """Return a new series holding ``image`` (slices, rows, columns; 2-D is one slice).

        Each slice becomes an instance numbered from 1; the blueprint's elements
        are made from ``parent_series`` (an instance element gets the parent
        instance at the same position, if the counts match).

        Raises:
            ConstructionFailure: if the image is not 2-D or 3-D numeric, a blueprint
                element fails, or an InstanceCopyElement has no matching parent
                instance per slice.
        """
        volume = _volume(image)
        parents = _datasets(parent_series)
        series = DicomSeries([_skeleton(i) for i in range(len(volume))])
        for virtual_element in blueprint:
            if isinstance(virtual_element, InstanceCopyElement) and len(parents) != len(volume):
                raise ConstructionFailure(
                    f"Blueprint copies {virtual_element.tag} {virtual_element.name} per "
                    f"instance, but the parent series has {len(parents)} instances and "
                    f"the image {len(volume)} slices."
                )
            self._apply(series, virtual_element, parents, volume, kwargs or {})
        for dataset, slice_ in zip(series, volume, strict=True):
            self.store_image_in_dataset(dataset, slice_)
            make_meta(dataset)
        return series

    def build_series_without_image_encoding(
        self,
        images: Sequence[Any],
        blueprint: Blueprint,
        datasets: ParentSeries,
        kwargs: dict[Any, Any] | None = None,
    ) -> DicomSeries:
        """Return a series of one dataset per image, pixel data left to the blueprint.

        Raises:
            InvalidDataset: if the blueprint gives no SOPClassUID.
        """
        parents = _datasets(datasets)
        series = DicomSeries([Dataset() for _ in images])
        for virtual_element in blueprint:
            self._apply(series, virtual_element, parents, images, kwargs or {})
        for dataset in series:
            make_meta(dataset)
        return series

    def apply_blueprint_list(
        self,
        constructed_series: DicomSeries,
        blueprint: Blueprint,
        original_series: Sequence[Dataset] = (),
        **kwargs: Any,
    ) -> None:
        """Apply ``blueprint`` to the datasets of ``constructed_series`` in place."""
        parents = list(original_series)
        slices = [None] * len(constructed_series)
        for virtual_element in blueprint:
            self._apply(constructed_series, virtual_element, parents, slices, kwargs)

    def build_instance(
        self, pivot: Dataset, blueprint: Blueprint, kwargs: dict[Any, Any] | None = None
    ) -> Dataset:
        """Return one dataset made from ``blueprint`` with ``pivot`` as its parent.

        Raises:
            ConstructionFailure: (a ``ValueError``) if the result has no SOPClassUID.
        """
        dataset = Dataset()
        environment = InstanceEnvironment(1, self, kwargs=kwargs or {})
        for virtual_element in blueprint:
            made = _corporealialize(virtual_element, [pivot])
            if isinstance(made, InstanceVirtualElement):
                made = made.produce(environment)
            if made is not None:
                dataset.add(made)
        if "SOPClassUID" not in dataset:
            raise ConstructionFailure(
                "The blueprint gives no SOPClassUID; cannot build an instance."
            )
        make_meta(dataset)
        return dataset

    def encode_pdf(
        self,
        report: Any,
        datasets: Sequence[Dataset],
        report_blueprint: Blueprint,
        kwargs: dict[Any, Any] | None = None,
    ) -> list[Dataset]:
        """Return the instances carrying a PDF report; see :func:`pdf_report.encode_pdf`."""
        return encode_pdf(self, report, datasets, report_blueprint, kwargs)

    def _apply(
        self,
        series: DicomSeries,
        virtual_element: VirtualElement,
        parents: list[Dataset],
        images: Sequence[Any] | npt.NDArray[Any],
        kwargs: dict[Any, Any],
    ) -> None:
        made = _corporealialize(virtual_element, parents)
        if isinstance(made, DataElement):
            series.set_shared_tag(virtual_element.tag, made)
        elif isinstance(made, InstanceVirtualElement):
            same_count = len(parents) == len(series)
            environments = [
                InstanceEnvironment(
                    instance_number=index + 1,
                    factory=self,
                    kwargs=kwargs,
                    instance_dataset=parents[index] if same_count else None,
                    image=images[index],
                )
                for index in range(len(series))
            ]
            elements = [_produce(made, environment) for environment in environments]
            series.set_individual_tag(virtual_element.tag, elements)


def _corporealialize(
    virtual_element: VirtualElement, parents: Sequence[Dataset]
) -> DataElement | InstanceVirtualElement | None:
    try:
        return virtual_element.corporealialize(parents)
    except ConstructionFailure:
        raise
    except Exception as exc:
        raise ConstructionFailure(
            f"Blueprint element {virtual_element.tag} {virtual_element.name}: {_reason(exc)}"
        ) from exc


def _produce(
    virtual_element: InstanceVirtualElement, environment: InstanceEnvironment
) -> DataElement:
    try:
        return virtual_element.produce(environment)
    except ConstructionFailure:
        raise
    except Exception as exc:
        raise ConstructionFailure(
            f"Blueprint element {virtual_element.tag} {virtual_element.name}, instance "
            f"{environment.instance_number}: {_reason(exc)}"
        ) from exc


def _reason(exc: Exception) -> str:
    """The message of ``exc`` (without the quotes ``str(KeyError)`` adds)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def _volume(image: Any) -> npt.NDArray[Any]:
    raw = getattr(image, "raw", image)
    volume = np.asarray(raw)
    if volume.ndim == 2:
        volume = volume[np.newaxis]
    if volume.ndim != 3 or not len(volume):
        raise ConstructionFailure(
            f"A series is built from a 3-D image (slices, rows, columns); got shape {volume.shape}."
        )
    return volume


def _datasets(parent_series: ParentSeries | Iterable[Dataset]) -> list[Dataset]:
    if isinstance(parent_series, DicomSeries):
        return parent_series.datasets
    if isinstance(parent_series, Dataset):
        return [parent_series]
    return list(parent_series)


def _skeleton(index: int) -> Dataset:
    dataset = Dataset()
    dataset.InstanceNumber = index + 1
    return dataset
