import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from dicomflow.dicom.factory import make_ct_series, make_dataset, write_series
from dicomflow.errors import DicomflowError, FactoryError

# Attributes of the CT Image IOD modules (Type 1 and 2) the factory must fill in.
CT_IMAGE_KEYWORDS = [
    "SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID", "PatientBirthDate",
    "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName",
    "StudyID", "AccessionNumber", "Modality", "SeriesInstanceUID", "SeriesNumber",
    "FrameOfReferenceUID", "PositionReferenceIndicator", "Manufacturer", "InstanceNumber",
    "ImageType", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient",
    "SliceThickness", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData",
    "RescaleIntercept", "RescaleSlope", "KVP", "AcquisitionNumber",
]  # fmt: skip


def test_make_ct_series_gives_valid_ct_instances() -> None:
    series = make_ct_series(5, rows=32, columns=48)
    assert len(series) == 5
    for ds in series:
        assert [k for k in CT_IMAGE_KEYWORDS if k not in ds] == []
        assert ds.SOPClassUID == CTImageStorage
        assert ds.Modality == "CT"
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert "ImplementationClassUID" in ds.file_meta
        assert ds.ImageOrientationPatient == [1, 0, 0, 0, 1, 0]
        assert (ds.RescaleSlope, ds.RescaleIntercept) == (1, -1024)
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (16, 12, 11)
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.pixel_array.shape == (32, 48)
        assert ds.pixel_array.dtype == np.uint16
        assert int(ds.pixel_array.max()) <= 4095


def test_make_ct_series_shares_study_series_and_frame_of_reference() -> None:
    series = make_ct_series(4)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({ds[keyword].value for ds in series}) == 1, keyword
    assert len({ds.SOPInstanceUID for ds in series}) == 4
    assert series[0].StudyInstanceUID != series[0].SeriesInstanceUID


def test_make_ct_series_generates_new_uids_per_call() -> None:
    first, second = make_ct_series(1)[0], make_ct_series(1)[0]
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert first[keyword].value != second[keyword].value, keyword


def test_make_ct_series_uses_given_identifiers() -> None:
    series = make_ct_series(
        2,
        patient_id="P42",
        patient_name="Doe^Jane",
        study_instance_uid="1.2.3",
        series_instance_uid="1.2.3.4",
        modality="MR",
    )
    for ds in series:
        assert ds.PatientID == "P42"
        assert ds.PatientName == "Doe^Jane"
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == ("1.2.3", "1.2.3.4")
        assert ds.Modality == "MR"


@pytest.mark.parametrize("thickness", [1.0, 2.5, 0.1])
def test_make_ct_series_steps_along_z(thickness: float) -> None:
    series = make_ct_series(5, slice_thickness=thickness)
    assert [ds.InstanceNumber for ds in series] == [1, 2, 3, 4, 5]
    z = [float(ds.ImagePositionPatient[2]) for ds in series]
    assert z == pytest.approx([i * thickness for i in range(5)])
    assert float(series[0].SliceThickness) == pytest.approx(thickness)
    assert {tuple(ds.ImagePositionPatient[:2]) for ds in series} == {(-16.0, -16.0)}


def test_make_ct_series_pixels_depend_on_seed_only() -> None:
    first, again, other = make_ct_series(3), make_ct_series(3), make_ct_series(3, seed=7)
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
        assert not np.array_equal(a.pixel_array, c.pixel_array)


def test_make_ct_series_holds_a_phantom() -> None:
    middle = make_ct_series(9, rows=64, columns=64)[4].pixel_array.astype(int) - 1024
    assert middle[0, 0] == pytest.approx(-1000, abs=60)  # air
    assert middle[32, 50] == pytest.approx(40, abs=60)  # soft tissue
    assert middle[32, 32] == pytest.approx(1000, abs=60)  # bone
    assert middle.std() > 0


def test_make_ct_series_of_zero_instances() -> None:
    assert make_ct_series(0) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"count": -1}, "count is -1"),
        ({"count": 1, "rows": 0}, "rows is 0"),
        ({"count": 1, "columns": -3}, "columns is -3"),
    ],
)
def test_make_ct_series_rejects_bad_sizes(arguments: dict[str, int], message: str) -> None:
    with pytest.raises(FactoryError, match=message):
        make_ct_series(**arguments)


def test_make_ct_series_is_fast_at_full_size() -> None:
    start = time.perf_counter()
    series = make_ct_series(300, rows=512, columns=512)
    elapsed = time.perf_counter() - start
    assert len(series) == 300
    assert series[-1].pixel_array.shape == (512, 512)
    assert elapsed < 30, f"300 instances of 512x512 took {elapsed:.1f} s"


def test_write_series_round_trip(tmp_path: Path) -> None:
    series = make_ct_series(3, rows=16, columns=16)
    paths = write_series(series, tmp_path / "a" / "b")
    assert [path.name for path in paths] == ["00000.dcm", "00001.dcm", "00002.dcm"]
    for path, original in zip(paths, series, strict=True):
        assert path.read_bytes()[128:132] == b"DICM"
        read = dcmread(path)  # no force: a conformant Part-10 file
        assert read.SOPInstanceUID == original.SOPInstanceUID
        assert read.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
        assert read.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert read.ImagePositionPatient == original.ImagePositionPatient
        assert read.PatientName == original.PatientName
        np.testing.assert_array_equal(read.pixel_array, original.pixel_array)


def test_write_series_into_existing_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    paths = write_series(make_ct_series(1), str(tmp_path))
    assert paths == [tmp_path / "00000.dcm"]
    assert (tmp_path / "keep.txt").exists()


def test_make_dataset_is_one_valid_instance() -> None:
    ds = make_dataset()
    assert [k for k in CT_IMAGE_KEYWORDS if k not in ds] == []
    assert ds.pixel_array.shape == (16, 16)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom flags the hostile values
@pytest.mark.parametrize("patient_id", ["../x", "/etc/passwd", "", "a\x00b", "x" * 1000, "Ülrich"])
def test_make_dataset_keeps_hostile_values(patient_id: str, tmp_path: Path) -> None:
    ds = make_dataset(PatientID=patient_id)
    assert ds.PatientID == patient_id
    read = dcmread(write_series([ds], tmp_path)[0])
    assert read.PatientID.rstrip(" ") == patient_id


def test_make_dataset_keeps_values_too_long_to_write() -> None:
    assert make_dataset(PatientID="x" * 70_000).PatientID == "x" * 70_000


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom flags the hostile values
def test_make_dataset_keeps_values_pydicom_cannot_convert() -> None:
    ds = make_dataset(RescaleSlope="abc", InstanceNumber="one")
    assert ds.RescaleSlope == "abc"
    assert ds.InstanceNumber == "one"


def test_make_dataset_removes_attributes_given_none() -> None:
    ds = make_dataset(PatientID=None, SeriesInstanceUID=None)
    assert "PatientID" not in ds
    assert "SeriesInstanceUID" not in ds


def test_make_dataset_mirrors_sop_uids_into_file_meta() -> None:
    ds = make_dataset(SOPInstanceUID="1.2.3", SOPClassUID="1.2.840.10008.5.1.4.1.1.4")
    assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3"
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.4"


def test_make_dataset_rejects_unknown_keyword() -> None:
    with pytest.raises(FactoryError, match='"PatientIdentifier" is not a DICOM keyword'):
        make_dataset(PatientIdentifier="x")


def test_factory_error_is_a_dicomflow_value_error() -> None:
    assert issubclass(FactoryError, DicomflowError)
    assert issubclass(FactoryError, ValueError)
