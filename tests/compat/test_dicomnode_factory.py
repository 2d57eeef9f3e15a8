"""The pipeline library's DICOM factory, blueprints and helpers under ``dicomflow.dicom``.

Series are built from numpy volumes and real parent series (synthetic CT and
pydicom's bundled CT), written as Part-10 files, read back with pydicom and
checked with dcmtk (``dcmftest``, ``storescu`` to ``storescp``) and
dicom3tools' ``dciodvfy``.
"""

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import PIL.Image
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, SecondaryCaptureImageStorage
from pydicom.valuerep import PersonName

from dicomflow.dicom import (
    extrapolate_image_position_patient_dataset,
    format_from_patient_name,
    format_from_patient_name_str,
    gen_uid,
    get_tag,
    make_meta,
)
from dicomflow.dicom.blueprints import (
    SOP_common_blueprint,
    ct_image_blueprint,
    default_report_blueprint,
    frame_of_reference_blueprint,
    general_equipment_blueprint,
    general_image_blueprint,
    general_series_blueprint,
    general_study_blueprint,
    image_plane_blueprint,
    patient_blueprint,
)
from dicomflow.dicom.blueprints.secondary_image_report_blueprint import (
    SECONDARY_IMAGE_REPORT_BLUEPRINT,
)
from dicomflow.dicom.dicom_factory import (
    Blueprint,
    CopyElement,
    DicomFactory,
    DicomSeries,
    FunctionalElement,
    InstanceCopyElement,
    StaticElement,
)
from dicomflow.dicom.factory import make_ct_series
from dicomflow.dicom.grinders import numpy_grinder
from dicomflow.dicom.sop_mapping import CTImageStorage_required_tags
from dicomflow.lib.exceptions import (
    BlueprintConstructionFailure,
    ConstructionFailure,
    InvalidDataset,
)
from dicomflow.node.output import FileOutput, write_outputs
from support import StoreSCPPeer, storescu

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
SLICES, ROWS, COLUMNS = 4, 12, 10


def full_ct_blueprint() -> Blueprint:
    """Every module of a CT Image derived from its parent."""
    return (
        SOP_common_blueprint
        + patient_blueprint
        + general_study_blueprint
        + general_series_blueprint
        + frame_of_reference_blueprint
        + general_equipment_blueprint
        + general_image_blueprint
        + image_plane_blueprint
        + ct_image_blueprint
    )


@pytest.fixture
def parents() -> list[Dataset]:
    series = make_ct_series(SLICES, rows=ROWS, columns=COLUMNS)
    for dataset in series:
        dataset.PatientPosition = "HFS"
    return series


def write(series: DicomSeries, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for dataset in series:
        path = folder / f"{dataset.InstanceNumber:03d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def modality_values(dataset: Dataset) -> npt.NDArray[np.float64]:
    slope = float(dataset.get("RescaleSlope", 1))
    intercept = float(dataset.get("RescaleIntercept", 0))
    return np.asarray(dataset.pixel_array, np.float64) * slope + intercept


def valid_uid(uid: str) -> bool:
    return len(uid) <= 64 and bool(UID_PATTERN.match(uid))


def _int16(rng: np.random.Generator) -> npt.NDArray[Any]:
    return rng.integers(-2000, 3000, (SLICES, ROWS, COLUMNS)).astype(np.int16)


def _uint16(rng: np.random.Generator) -> npt.NDArray[Any]:
    return rng.integers(0, 65535, (SLICES, ROWS, COLUMNS)).astype(np.uint16)


def _float(rng: np.random.Generator) -> npt.NDArray[Any]:
    return rng.normal(0.0, 1.0, (SLICES, ROWS, COLUMNS))


def _whole_float32(rng: np.random.Generator) -> npt.NDArray[Any]:
    return _int16(rng).astype(np.float32)


# volume maker, PixelRepresentation, BitsAllocated, rescaled, tolerance of the round trip
DTYPE_RULES: list[
    tuple[Callable[[np.random.Generator], npt.NDArray[Any]], int, int, bool, float]
] = [
    (_int16, 1, 16, False, 0.0),
    (_uint16, 0, 16, False, 0.0),
    (_float, 0, 16, True, 1e-3),
    (_whole_float32, 1, 16, False, 0.0),
]


@pytest.mark.parametrize(
    ("make_volume", "representation", "bits", "rescaled", "tolerance"),
    DTYPE_RULES,
    ids=["int16", "uint16", "float64", "whole-float32"],
)
def test_build_series_from_volume_round_trips_through_files(
    parents: list[Dataset],
    tmp_path: Path,
    make_volume: Callable[[np.random.Generator], npt.NDArray[Any]],
    representation: int,
    bits: int,
    rescaled: bool,
    tolerance: float,
) -> None:
    volume = make_volume(np.random.default_rng(7))

    series = DicomFactory().build_series(volume, full_ct_blueprint(), parents)
    built = [pydicom.dcmread(path) for path in write(series, tmp_path)]

    assert len(built) == SLICES
    parent = parents[0]
    uids = {ds.SOPInstanceUID for ds in built}
    assert len(uids) == SLICES and not uids & {p.SOPInstanceUID for p in parents}
    assert all(valid_uid(uid) for uid in uids)
    assert {ds.SeriesInstanceUID for ds in built} != {parent.SeriesInstanceUID}
    assert len({ds.SeriesInstanceUID for ds in built}) == 1
    assert valid_uid(built[0].SeriesInstanceUID)
    for index, (ds, source) in enumerate(zip(built, parents, strict=True)):
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == CTImageStorage
        assert (ds.PatientID, ds.PatientName) == (parent.PatientID, parent.PatientName)
        assert ds.StudyInstanceUID == parent.StudyInstanceUID
        assert ds.FrameOfReferenceUID == parent.FrameOfReferenceUID
        assert ds.InstanceNumber == index + 1
        assert ds.ImagePositionPatient == source.ImagePositionPatient
        assert (ds.Rows, ds.Columns) == (ROWS, COLUMNS)
        assert (ds.PixelRepresentation, ds.BitsAllocated) == (representation, bits)
        assert ds.HighBit == ds.BitsStored - 1
        if not rescaled:
            assert ds.pixel_array.dtype == volume.dtype or volume.dtype.kind == "f"
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, 0.0)
        np.testing.assert_allclose(modality_values(ds), volume[index], rtol=0, atol=tolerance)


def test_rescaled_float_slices_use_the_full_stored_range(
    parents: list[Dataset], tmp_path: Path
) -> None:
    volume = np.random.default_rng(3).uniform(-5.0, 5.0, (SLICES, ROWS, COLUMNS))

    built = [pydicom.dcmread(p) for p in write(_build(volume, parents), tmp_path)]

    for ds in built:
        assert (ds.SmallestImagePixelValue, ds.LargestImagePixelValue) == (0, 65535)
        assert ds.pixel_array.min() == 0 and ds.pixel_array.max() == 65535


def _build(volume: npt.NDArray[Any], parents: list[Dataset]) -> DicomSeries:
    return DicomFactory().build_series(volume, full_ct_blueprint(), parents)


def test_a_parents_rescale_copied_by_the_blueprint_does_not_change_stored_values(
    parents: list[Dataset],
) -> None:
    blueprint = full_ct_blueprint() + Blueprint(
        [CopyElement("RescaleIntercept"), CopyElement("RescaleSlope")]
    )
    volume = np.full((SLICES, ROWS, COLUMNS), 40, np.int16)

    series = DicomFactory().build_series(volume, blueprint, parents)

    assert float(parents[0].RescaleIntercept) == -1024
    assert all(float(ds.RescaleIntercept) == 0 for ds in series)
    assert all(np.all(modality_values(ds) == 40) for ds in series)


def test_plus_one_example_on_a_grinded_series_is_exact(parents: list[Dataset]) -> None:
    """examples/plusOneNode.py: ``build_series(volume + 1, ct_image_blueprint, datasets)``."""
    volume = numpy_grinder(parents)
    volume += 1

    series = DicomFactory().build_series(volume, ct_image_blueprint, parents)

    assert len(series) == SLICES
    for ds, expected in zip(series, volume, strict=True):
        assert ds.SOPClassUID == SecondaryCaptureImageStorage
        assert ds.KVP == parents[0].KVP
        np.testing.assert_array_equal(modality_values(ds), expected)


def test_bundled_ct_as_parent_gives_a_valid_ct_image_for_dicom3tools_and_dcmtk(
    tmp_path: Path,
) -> None:
    parent = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    volume = (parent.pixel_array.astype(np.int16) - 100)[np.newaxis]

    series = DicomFactory().build_series(volume, full_ct_blueprint(), DicomSeries([parent]))
    (path,) = write(series, tmp_path)

    assert subprocess.run(
        ["dcmftest", str(path)], capture_output=True, text=True
    ).stdout.startswith("yes:")
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in checked.stderr.splitlines() if line.startswith("Error")]
    # Laterality is Type 2C: required only for paired body parts, which dciodvfy cannot know.
    assert [e for e in errors if "<Laterality>" not in e] == []
    assert "CTImage" in checked.stderr
    read = pydicom.dcmread(path)
    assert read.PatientID == parent.PatientID and read.StudyInstanceUID == parent.StudyInstanceUID
    np.testing.assert_array_equal(read.pixel_array, volume[0])


def test_built_series_is_accepted_by_dcmtk_storescp(parents: list[Dataset], tmp_path: Path) -> None:
    volume = np.random.default_rng(1).normal(100.0, 30.0, (SLICES, ROWS, COLUMNS))
    paths = write(_build(volume, parents), tmp_path / "out")
    peer = StoreSCPPeer(tmp_path / "pacs")
    try:
        storescu(peer.port, paths, aec=peer.ae_title)
        received = peer.files()
    finally:
        peer.stop()

    assert len(received) == SLICES
    stored = {pydicom.dcmread(p).SOPInstanceUID for p in received}
    assert stored == {pydicom.dcmread(p).SOPInstanceUID for p in paths}


def test_average_node_blueprint_composition() -> None:
    """examples/averageNode.py composes three blueprints and adds a SeriesDescription."""
    blueprint = SOP_common_blueprint + image_plane_blueprint + general_series_blueprint
    blueprint.add_virtual_element(StaticElement(0x0008103E, "LO", "Averaged Image"))

    assert blueprint.get_required_tags() == [
        0x00080016,  # SOPClassUID
        0x00080060,  # Modality
        0x00180050,  # SliceThickness
        0x00185100,  # PatientPosition
        0x00200032,  # ImagePositionPatient (per instance)
        0x00200037,  # ImageOrientationPatient
        0x00280030,  # PixelSpacing
    ]
    assert isinstance(blueprint[0x0008103E], StaticElement)
    assert 0x0008103E in general_series_blueprint
    assert not isinstance(general_series_blueprint[0x0008103E], StaticElement)
    assert [int(ve.tag) for ve in blueprint] == sorted(int(ve.tag) for ve in blueprint)


def test_average_node_blueprint_builds_the_mean_of_two_series(parents: list[Dataset]) -> None:
    blueprint = SOP_common_blueprint + image_plane_blueprint + general_series_blueprint
    blueprint.add_virtual_element(StaticElement(0x0008103E, "LO", "Averaged Image"))
    mean = np.mean([numpy_grinder(parents), numpy_grinder(parents) + 2], axis=0)

    series = DicomFactory().build_series(mean, blueprint, parents)

    assert {ds.SeriesDescription for ds in series} == {"Averaged Image"}
    assert series.pivot.Modality == "CT"
    np.testing.assert_array_equal(modality_values(series.datasets[1]), mean[1])


def test_blueprint_addition_lets_the_right_side_win_and_copies() -> None:
    left = Blueprint(
        [StaticElement("PatientID", "LO", "L"), StaticElement("PatientSex", "CS", "F")]
    )
    right = Blueprint([StaticElement("PatientID", "LO", "R")])

    combined = left + right

    assert combined is not left and len(combined) == 2
    assert combined["PatientID"] is right["PatientID"]
    assert left["PatientID"].value == "L"  # type: ignore[attr-defined]


def test_private_elements_get_their_block_reserved_and_survive_a_file(tmp_path: Path) -> None:
    blueprint = Blueprint(
        [
            StaticElement("SOPClassUID", "UI", SecondaryCaptureImageStorage),
            StaticElement(0x00111001, "LO", "model v2", name="Model version"),
            FunctionalElement(0x00111002, "IS", lambda env: env.instance_number, name="Index"),
        ]
    )

    dataset = DicomFactory().build_instance(Dataset(), blueprint)
    dataset.save_as(tmp_path / "private_elements.dcm", enforce_file_format=True)
    read = pydicom.dcmread(tmp_path / "private_elements.dcm")

    assert read[0x00110010].value == "Dicomnode - Private tags version: 1"
    assert read[0x00111001].value == "model v2"
    assert list(read[0x001110FE].value) == ["(0011,1001) Model version", "(0011,1002) Index"]
    assert list(read[0x001110FF].value) == ["LO", "IS"]
    assert 0x00111001 not in blueprint.get_required_tags()


@pytest.mark.parametrize("tag", [0x00110010, 0x001110FE, 0x001110FF])
def test_reserved_private_tags_are_refused(tag: int) -> None:
    with pytest.raises(BlueprintConstructionFailure, match=r"\(0011,"):
        Blueprint([StaticElement(tag, "LO", "mine")])


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (np.full((2, 4, 4), np.nan), "NaN or infinite"),
        (np.zeros((1, 2, 4, 4)), "3-D image"),
        (np.zeros((2, 4, 4), np.complex64), "dtype complex64"),
    ],
    ids=["nan", "4-d", "complex"],
)
def test_unstorable_volumes_are_refused_clearly(
    parents: list[Dataset], volume: npt.NDArray[Any], message: str
) -> None:
    with pytest.raises(ConstructionFailure, match=message):
        DicomFactory().build_series(volume, Blueprint(), parents)


def test_missing_required_parent_attribute_names_the_tag(parents: list[Dataset]) -> None:
    blueprint = Blueprint([CopyElement("PatientWeight")])

    with pytest.raises(ConstructionFailure, match=r"\(0010,1030\) Patient's Weight"):
        DicomFactory().build_series(np.zeros((SLICES, 4, 4), np.uint16), blueprint, parents)


def test_instance_copy_needs_one_parent_per_slice(parents: list[Dataset]) -> None:
    blueprint = Blueprint([InstanceCopyElement("SliceLocation", "DS")])

    with pytest.raises(ConstructionFailure, match="has 4 instances and the image 2 slices"):
        DicomFactory().build_series(np.zeros((2, 4, 4), np.uint16), blueprint, parents)


def test_make_meta_fills_the_file_meta_and_a_missing_instance_uid() -> None:
    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage

    make_meta(dataset)

    meta = dataset.file_meta
    assert valid_uid(dataset.SOPInstanceUID)
    assert meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    assert meta.MediaStorageSOPClassUID == CTImageStorage
    assert meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_make_meta_refuses_a_dataset_without_sop_class_or_with_big_endian() -> None:
    with pytest.raises(InvalidDataset, match="SOPClassUID"):
        make_meta(Dataset())
    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage
    dataset.ensure_file_meta()
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.UID("1.2.840.10008.1.2.2")
    with pytest.raises(InvalidDataset, match="Big Endian"):
        make_meta(dataset)


def test_gen_uid_is_unique_and_valid() -> None:
    uids = {gen_uid() for _ in range(200)}

    assert len(uids) == 200 and all(valid_uid(uid) for uid in uids)


def test_ct_required_tags_are_held_by_a_real_ct(parents: list[Dataset]) -> None:
    missing = [hex(tag) for tag in CTImageStorage_required_tags if tag not in parents[0]]

    assert missing == []
    assert len(set(CTImageStorage_required_tags)) == len(CTImageStorage_required_tags)


def test_importing_a_dicom_submodule_loads_no_factory_code() -> None:
    code = (
        "import sys, dicomflow.dicom.keys, dicomflow.lib.exceptions\n"
        "assert 'numpy' not in sys.modules, 'numpy'\n"
        "assert 'dicomflow.dicom.derived_series' not in sys.modules\n"
        "from dicomflow.dicom import make_meta, blueprints\n"
        "assert 'dicomflow.dicom.module_blueprints' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr


MINIMAL_PDF = (
    b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]"
    b"/Count 1>>endobj 3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 72 72]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF"
)


def dciodvfy_errors(path: Path) -> list[str]:
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in checked.stderr.splitlines() if line.startswith("Error")]


def test_pdf_report_is_encapsulated_in_the_parents_study(
    parents: list[Dataset], tmp_path: Path
) -> None:
    (tmp_path / "report.pdf").write_bytes(MINIMAL_PDF)
    for dataset in parents:
        dataset.StudyDescription = "Thorax"

    (report,) = DicomFactory().encode_pdf(
        tmp_path / "report.pdf", parents, default_report_blueprint
    )
    report.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    read = pydicom.dcmread(tmp_path / "report.dcm")

    assert read.SOPClassUID == pydicom.uid.EncapsulatedPDFStorage
    assert read.EncapsulatedDocument[: len(MINIMAL_PDF)] == MINIMAL_PDF
    assert read.EncapsulatedDocumentLength == len(MINIMAL_PDF)
    assert (read.PatientID, read.StudyInstanceUID) == (
        parents[0].PatientID,
        parents[0].StudyInstanceUID,
    )
    assert [item.ReferencedSOPInstanceUID for item in read.SourceInstanceSequence] == [
        dataset.SOPInstanceUID for dataset in parents
    ]
    assert dciodvfy_errors(tmp_path / "report.dcm") == []


def test_a_file_that_is_not_a_pdf_is_refused(parents: list[Dataset], tmp_path: Path) -> None:
    (tmp_path / "report.pdf").write_bytes(b"<html>not a pdf</html>")

    with pytest.raises(ConstructionFailure, match="is not a PDF"):
        DicomFactory().encode_pdf(tmp_path / "report.pdf", parents, default_report_blueprint)


def test_report_pages_as_secondary_capture_images(parents: list[Dataset], tmp_path: Path) -> None:
    pages = [PIL.Image.new("RGB", (31, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]

    series = DicomFactory().build_series_without_image_encoding(
        pages, SECONDARY_IMAGE_REPORT_BLUEPRINT, parents
    )
    paths = write(series, tmp_path)
    read = [pydicom.dcmread(path) for path in paths]

    assert [ds.pixel_array[0, 0].tolist() for ds in read] == [[255, 0, 0], [0, 0, 255]]
    assert {ds.PatientID for ds in read} == {parents[0].PatientID}
    assert [e for e in dciodvfy_errors(paths[1]) if "<Laterality>" not in e] == []


def test_extrapolated_positions_match_a_real_feet_first_series(parents: list[Dataset]) -> None:
    first = parents[0]
    first.PatientPosition = "FFS"

    positions = extrapolate_image_position_patient_dataset(first, SLICES)

    assert positions == [[float(v) for v in ds.ImagePositionPatient] for ds in parents]
    del first.InstanceNumber
    with pytest.raises(InvalidDataset, match="InstanceNumber"):
        extrapolate_image_position_patient_dataset(first, SLICES)


def test_get_tag_and_display_names(parents: list[Dataset]) -> None:
    assert get_tag(0x00100020)(parents[0]).value == "DEMO001"  # type: ignore[union-attr]
    assert get_tag("PatientWeight")(parents[0]) is None
    assert format_from_patient_name_str("DOE^JOHN^Q^Dr.") == "Dr. John Q Doe"
    name = PersonName.from_named_components(family_name="DOE", given_name="JANE")
    assert format_from_patient_name(name) == "Jane Doe"


def test_built_datasets_share_no_mutable_value_with_each_other_or_the_parent(
    parents: list[Dataset],
) -> None:
    series = _build(np.zeros((SLICES, ROWS, COLUMNS), np.int16), parents)

    series.datasets[0].ImageType[0] = "DERIVED"
    series.datasets[0].PixelSpacing[0] = 9

    assert series.datasets[1].ImageType[0] == parents[0].ImageType[0] == "ORIGINAL"
    assert series.datasets[1].PixelSpacing[0] == parents[0].PixelSpacing[0] == 0.5


def test_a_built_series_goes_through_the_pipelines_output_writer(
    parents: list[Dataset], tmp_path: Path
) -> None:
    series = _build(numpy_grinder(parents) + 1, parents)

    manifest = write_outputs([FileOutput([(tmp_path / "dest", series)])], tmp_path / "output")

    (entry,) = manifest["outputs"]
    written = [pydicom.dcmread(tmp_path / "output" / entry["folder"] / f) for f in entry["files"]]
    assert sorted(ds.SOPInstanceUID for ds in written) == sorted(ds.SOPInstanceUID for ds in series)
