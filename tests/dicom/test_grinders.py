import random
from collections.abc import Iterator

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.tag import Tag
from pydicom.uid import JPEG2000Lossless, RLELossless

from dicomflow.dicom.factory import make_ct_series, make_dataset
from dicomflow.dicom.grinders import (
    GrinderError,
    dataset_list_grinder,
    identity_grinder,
    list_grinder,
    numpy_grinder,
    tag_grinder,
)
from dicomflow.errors import DicomflowError, PipelineDefinitionError


def shuffled(datasets: list[Dataset], seed: int = 1) -> list[Dataset]:
    copy = list(datasets)
    random.Random(seed).shuffle(copy)
    return copy


def instance_numbers(datasets: list[Dataset]) -> list[int]:
    return [int(ds.InstanceNumber) for ds in datasets]


def read_testdata(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return dcmread(path)


def test_identity_grinder_returns_the_same_iterator() -> None:
    datasets: Iterator[Dataset] = iter(make_ct_series(3))
    assert identity_grinder(datasets) is datasets


def test_list_grinder_keeps_arrival_order() -> None:
    series = shuffled(make_ct_series(5))
    result = list_grinder(iter(series))
    assert isinstance(result, list)
    assert [ds.SOPInstanceUID for ds in result] == [ds.SOPInstanceUID for ds in series]


@pytest.mark.parametrize(
    "tags",
    [
        ("SOPInstanceUID", "InstanceNumber"),
        (0x00080018, 0x00200013),
        (Tag("SOPInstanceUID"), Tag(0x0020, 0x0013)),
    ],
)
def test_tag_grinder_gives_values_per_instance(tags: tuple[int | str, ...]) -> None:
    series = shuffled(make_ct_series(4))
    result = tag_grinder(*tags)(iter(series))
    assert result == [(ds.SOPInstanceUID, ds.InstanceNumber) for ds in series]


def test_tag_grinder_gives_none_for_missing_attribute() -> None:
    dataset = make_dataset(PatientID=None)
    assert tag_grinder("PatientID", "Modality")(iter([dataset])) == [(None, "CT")]


@pytest.mark.parametrize("tags", [(), ("NotAKeyword",)])
def test_tag_grinder_rejects_bad_declarations(tags: tuple[str, ...]) -> None:
    with pytest.raises(PipelineDefinitionError):
        tag_grinder(*tags)


def test_dataset_list_grinder_sorts_shuffled_series_by_position() -> None:
    series = make_ct_series(12)
    for ds in series:  # instance numbers run against the positions: position must win
        ds.InstanceNumber = 100 - ds.InstanceNumber
    result = dataset_list_grinder(iter(shuffled(series)))
    z = [float(ds.ImagePositionPatient[2]) for ds in result]
    assert z == sorted(z)
    assert [ds.SOPInstanceUID for ds in result] == [ds.SOPInstanceUID for ds in series]


def test_dataset_list_grinder_projects_on_slice_normal() -> None:
    # Sagittal: rows along +y, columns along -z, so the normal is -x.
    series = make_ct_series(6)
    for index, ds in enumerate(series):
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [float(index), 0.0, 0.0]
    result = dataset_list_grinder(iter(shuffled(series)))
    assert [float(ds.ImagePositionPatient[0]) for ds in result] == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_dataset_list_grinder_falls_back_to_instance_number(keyword: str) -> None:
    series = make_ct_series(8)
    for ds in series:  # positions now disagree with instance numbers
        ds.ImagePositionPatient = [0.0, 0.0, -float(ds.InstanceNumber)]
    del series[3][keyword]
    result = dataset_list_grinder(iter(shuffled(series)))
    assert instance_numbers(result) == list(range(1, 9))


def test_dataset_list_grinder_falls_back_to_sop_instance_uid() -> None:
    series = make_ct_series(6)
    for ds in series:
        del ds.ImagePositionPatient
        del ds.InstanceNumber
    result = dataset_list_grinder(iter(shuffled(series)))
    uids = [ds.SOPInstanceUID for ds in result]
    assert uids == sorted(uids)


def test_dataset_list_grinder_accepts_empty_input() -> None:
    assert dataset_list_grinder(iter([])) == []


def test_dataset_list_grinder_rejects_mixed_series() -> None:
    first, second = make_ct_series(3), make_ct_series(2)
    with pytest.raises(GrinderError) as caught:
        dataset_list_grinder(iter(shuffled(first + second)))
    message = str(caught.value)
    assert first[0].SeriesInstanceUID in message
    assert second[0].SeriesInstanceUID in message
    assert "2 SeriesInstanceUIDs" in message


def test_grinder_error_is_a_dicomflow_value_error() -> None:
    assert issubclass(GrinderError, DicomflowError)
    assert issubclass(GrinderError, ValueError)


def test_dataset_list_grinder_bounds_the_message_for_many_series() -> None:
    datasets = [make_ct_series(1)[0] for _ in range(8)]
    with pytest.raises(GrinderError, match=r"8 SeriesInstanceUIDs.* and 3 more"):
        dataset_list_grinder(iter(datasets))


def test_numpy_grinder_sorts_and_applies_rescale() -> None:
    series = make_ct_series(10, rows=32, columns=24)
    series[4].RescaleSlope = 2
    series[4].RescaleIntercept = -100
    expected = np.stack([ds.pixel_array.astype(np.float64) - 1024 for ds in series])
    expected[4] = series[4].pixel_array * 2.0 - 100
    volume = numpy_grinder(iter(shuffled(series)))
    assert volume.shape == (10, 32, 24)
    assert volume.dtype == np.float64
    np.testing.assert_array_equal(volume, expected)


def test_numpy_grinder_gives_hounsfield_units_of_the_phantom() -> None:
    volume = numpy_grinder(iter(make_ct_series(9, rows=64, columns=64)))
    assert volume[4, 0, 0] == pytest.approx(-1000, abs=60)  # air
    assert volume[4, 32, 32] == pytest.approx(1000, abs=60)  # bone at the centre


def test_numpy_grinder_reads_pydicom_ct_small() -> None:
    ct = read_testdata("CT_small.dcm")
    volume = numpy_grinder(iter([ct]))
    expected = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    assert volume.shape == (1, ct.Rows, ct.Columns)
    assert float(ct.RescaleIntercept) != 0
    np.testing.assert_allclose(volume[0], expected)


@pytest.mark.parametrize(
    "compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_numpy_grinder_decodes_compressed_pydicom_files(compressed: str) -> None:
    reference = numpy_grinder(iter([read_testdata("MR_small.dcm")]))
    np.testing.assert_array_equal(numpy_grinder(iter([read_testdata(compressed)])), reference)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_numpy_grinder_decodes_compressed_series(syntax: str) -> None:
    series = make_ct_series(3, rows=32, columns=32)
    reference = numpy_grinder(iter(series))
    for ds in series:
        ds.compress(syntax)
    np.testing.assert_array_equal(numpy_grinder(iter(shuffled(series))), reference)


def test_numpy_grinder_stacks_multi_frame_instances() -> None:
    dose = read_testdata("rtdose.dcm")
    volume = numpy_grinder(iter([dose]))
    assert volume.shape == (int(dose.NumberOfFrames), dose.Rows, dose.Columns)
    np.testing.assert_array_equal(volume, dose.pixel_array)


def test_numpy_grinder_names_instance_without_pixel_data() -> None:
    series = make_ct_series(3)
    del series[1].PixelData
    with pytest.raises(GrinderError, match=f"{series[1].SOPInstanceUID} has no pixel data"):
        numpy_grinder(iter(series))


def test_numpy_grinder_names_instance_of_other_shape() -> None:
    series = make_ct_series(3, rows=16, columns=16)
    series[1].Rows = series[1].Columns = 8
    series[1].PixelData = series[1].PixelData[: 8 * 8 * 2]
    with pytest.raises(GrinderError, match=f"{series[1].SOPInstanceUID} has frames of 8x8"):
        numpy_grinder(iter(series))


def test_numpy_grinder_names_undecodable_instance() -> None:
    series = make_ct_series(2)
    series[0].PixelData = b"\x00\x01\x02"
    with pytest.raises(GrinderError, match=f"{series[0].SOPInstanceUID}: pixel data cannot be"):
        numpy_grinder(iter(series))


def test_numpy_grinder_rejects_colour() -> None:
    with pytest.raises(GrinderError, match="SamplesPerPixel 3"):
        numpy_grinder(iter([read_testdata("SC_rgb_rle.dcm")]))


def test_numpy_grinder_names_non_numeric_rescale() -> None:
    dataset = make_dataset(RescaleSlope="abc")
    with pytest.raises(GrinderError, match='RescaleSlope "abc"; expected a number'):
        numpy_grinder(iter([dataset]))


def test_numpy_grinder_rejects_empty_input() -> None:
    with pytest.raises(GrinderError, match="no instances"):
        numpy_grinder(iter([]))


def test_numpy_grinder_rejects_mixed_series() -> None:
    with pytest.raises(GrinderError, match="2 SeriesInstanceUIDs"):
        numpy_grinder(iter(make_ct_series(2) + make_ct_series(2)))


def test_dataset_list_grinder_tells_apart_long_hostile_series_uids() -> None:
    first = make_dataset(SeriesInstanceUID="1" * 100 + "1")
    second = make_dataset(SeriesInstanceUID="1" * 100 + "2")
    with pytest.raises(GrinderError, match=r"2 SeriesInstanceUIDs: 1{64}\.\.\.\(101 chars\)"):
        dataset_list_grinder(iter([first, second]))


def test_numpy_grinder_keeps_the_stored_type_without_rescale() -> None:
    mr = read_testdata("MR_small.dcm")  # int16, no rescale
    volume = numpy_grinder(iter([mr]))
    assert volume.dtype == np.int16
    np.testing.assert_array_equal(volume[0], mr.pixel_array)


def test_numpy_grinder_keeps_uint16_with_identity_rescale() -> None:
    series = make_ct_series(3, rows=8, columns=8)
    for ds in series:
        ds.RescaleIntercept = 0
    volume = numpy_grinder(iter(shuffled(series)))
    assert volume.dtype == np.uint16
    np.testing.assert_array_equal(volume, np.stack([ds.pixel_array for ds in series]))
