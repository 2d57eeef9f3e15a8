"""PDF reports as DICOM: Encapsulated PDF instances, or Secondary Capture pages.

:func:`encode_pdf` picks the encoding from the blueprint's static SOPClassUID:
Encapsulated PDF Storage gives one instance holding the document; Secondary
Capture Image Storage gives one RGB image instance per page (rendering pages
needs the optional ``pdf2image`` package and poppler).
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import EncapsulatedPDFStorage, SecondaryCaptureImageStorage

from dicomflow.dicom.blueprint import Blueprint
from dicomflow.dicom.series import DicomSeries
from dicomflow.dicom.virtual_element import StaticElement, get_pivot
from dicomflow.errors import ConstructionFailure

logger = logging.getLogger(__name__)


class ReportFactory(Protocol):
    """What a report needs of :class:`dicomflow.dicom.derived_series.DicomFactory`."""

    def build_instance(
        self, pivot: Dataset, blueprint: Blueprint, kwargs: dict[Any, Any] | None = None
    ) -> Dataset: ...

    def build_series_without_image_encoding(
        self,
        images: Sequence[Any],
        blueprint: Blueprint,
        datasets: DicomSeries | Sequence[Dataset],
        kwargs: dict[Any, Any] | None = None,
    ) -> DicomSeries: ...


PDF_MAGIC = b"%PDF-"
_ENCAPSULATED_DEFAULTS = (
    ("Modality", "DOC"),
    ("ConversionType", "WSD"),
    ("MIMETypeOfEncapsulatedDocument", "application/pdf"),
    ("DocumentTitle", ""),
)


def encode_pdf(
    factory: ReportFactory,
    report: Any,
    datasets: Sequence[Dataset],
    report_blueprint: Blueprint,
    kwargs: dict[Any, Any] | None = None,
) -> list[Dataset]:
    """Return the DICOM instances carrying the PDF ``report`` about ``datasets``.

    ``report`` is a path to a PDF file, or an object with ``generate_pdf()``
    and ``file_name`` (the PDF is ``file_name + ".pdf"``).

    Raises:
        ConstructionFailure: if the blueprint has no static SOPClassUID or one that
            is neither Encapsulated PDF nor Secondary Capture, ``datasets`` is
            empty, or the file is not a PDF.
    """
    sop_class = _sop_class(report_blueprint)
    if get_pivot(datasets) is None:
        raise ConstructionFailure("Cannot encode a report without a dataset it is about.")
    document = read_pdf(report)
    if sop_class == EncapsulatedPDFStorage:
        return [_encapsulated(factory, document, datasets, report_blueprint, kwargs or {})]
    return _secondary_capture(factory, document, datasets, report_blueprint, kwargs or {})


def read_pdf(report: Any) -> bytes:
    """The bytes of the PDF ``report`` (a path, or a report object; see :func:`encode_pdf`)."""
    if isinstance(report, str | os.PathLike):
        path = Path(report)
    else:
        report.generate_pdf()
        path = Path(f"{report.file_name}.pdf")
    document = path.read_bytes()
    if not document.startswith(PDF_MAGIC):
        raise ConstructionFailure(f"{path} is not a PDF document (it does not start with %PDF-).")
    return document


def _sop_class(blueprint: Blueprint) -> str:
    element = blueprint.get(0x00080016)
    if not isinstance(element, StaticElement):
        raise ConstructionFailure("A report blueprint needs a StaticElement for SOPClassUID.")
    if element.value not in (EncapsulatedPDFStorage, SecondaryCaptureImageStorage):
        raise ConstructionFailure(
            f"Reports are encoded as Encapsulated PDF or Secondary Capture, not {element.value}."
        )
    return str(element.value)


def _encapsulated(
    factory: ReportFactory,
    document: bytes,
    datasets: Sequence[Dataset],
    blueprint: Blueprint,
    kwargs: dict[Any, Any],
) -> Dataset:
    pivot = get_pivot(datasets)
    dataset = factory.build_instance(pivot or Dataset(), blueprint, kwargs=kwargs)
    dataset.EncapsulatedDocument = document
    dataset.EncapsulatedDocumentLength = len(document)
    for keyword, value in _ENCAPSULATED_DEFAULTS:
        if keyword not in dataset:
            setattr(dataset, keyword, value)
    if "ConceptNameCodeSequence" not in dataset:
        dataset.ConceptNameCodeSequence = DicomSequence()
    if "SourceInstanceSequence" not in dataset:
        dataset.SourceInstanceSequence = DicomSequence(_references(datasets))
    return dataset


def _references(datasets: Sequence[Dataset]) -> list[Dataset]:
    references = []
    for source in datasets:
        if "SOPClassUID" in source and "SOPInstanceUID" in source:
            item = Dataset()
            item.ReferencedSOPClassUID = source.SOPClassUID
            item.ReferencedSOPInstanceUID = source.SOPInstanceUID
            references.append(item)
    return references


def _secondary_capture(
    factory: ReportFactory,
    document: bytes,
    datasets: Sequence[Dataset],
    blueprint: Blueprint,
    kwargs: dict[Any, Any],
) -> list[Dataset]:
    try:
        import pdf2image  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ConstructionFailure(
            "Rendering a PDF report as Secondary Capture pages needs the pdf2image package."
        ) from exc
    pages = [page.convert("RGB") for page in pdf2image.convert_from_bytes(document)]
    series = factory.build_series_without_image_encoding(pages, blueprint, datasets, kwargs)
    return series.datasets
