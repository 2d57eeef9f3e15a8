"""The pipeline library's grinder classes on dicomflow: dtypes, order, results and errors."""

import copy
import logging
import random
import sys
import types
from collections.abc import Iterator
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nibabel.nifti1 import Nifti1Image
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

import dicomflow.node.grinders as node_grinders
import dicomflow.server.grinders as server_grinders
from dicomflow.dicom.factory import make_ct_series
from dicomflow.dicom.grinders import numpy_grinder
from dicomflow.dicom.image_tree import DicomTree
from dicomflow.dicom.nifti import convert_to_nifti
from dicomflow.dicom.series import DicomSeries
from dicomflow.lib.exceptions import (
    IncorrectlyConfigured,
    InvalidDataset,
    MissingOptionalDependency,
    MissingPivotDataset,
)
from dicomflow.node.input import AbstractInput
from dicomflow.server.grinders import (
    DicomTreeGrinder,
    IdentityGrinder,
    ListGrinder,
    ManyGrinder,
    NiftiGrinder,
    NumpyGrinder,
    RTStructGrinder,
    SeriesGrinder,
    TagGrinder,
)


def read_testdata(name: str) -> Dataset:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is not installed"
    return dcmread(path, force=name == "rtstruct.dcm")  # that file has no preamble


def shuffled(datasets: list[Dataset], seed: int = 3) -> list[Dataset]:
    copy = list(datasets)
    random.Random(seed).shuffle(copy)
    return copy


def by_instance_number(datasets: list[Dataset]) -> list[Dataset]:
    return sorted(datasets, key=lambda ds: int(ds.InstanceNumber))


def without_rescale(datasets: list[Dataset]) -> list[Dataset]:
    for ds in datasets:
        del ds.RescaleSlope
        del ds.RescaleIntercept
    return datasets


def float_series(count: int, keyword: str, dtype: type[np.floating[Any]]) -> list[Dataset]:
    series = without_rescale(make_ct_series(count, rows=4, columns=5))
    rng = np.random.default_rng(7)
    for ds in series:
        del ds.PixelData
        del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
        ds.BitsAllocated = np.dtype(dtype).itemsize * 8
        setattr(ds, keyword, rng.uniform(-1, 1, (4, 5)).astype(dtype).tobytes())
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return series


def test_server_grinders_is_a_face_over_node_grinders() -> None:
    for name in node_grinders.__all__:
        assert getattr(server_grinders, name) is getattr(node_grinders, name)


def test_numpy_grinder_keeps_uint16_and_sorts_by_instance_number() -> None:
    series = without_rescale(make_ct_series(6, rows=12, columns=10))
    cube = NumpyGrinder()(shuffled(series))
    assert cube.dtype == np.uint16
    assert cube.shape == (6, 12, 10)
    np.testing.assert_array_equal(cube, np.stack([ds.pixel_array for ds in series]))


def test_numpy_grinder_keeps_int16_of_pydicom_mr() -> None:
    mr = read_testdata("MR_small.dcm")
    cube = NumpyGrinder()([mr])
    assert cube.dtype == np.int16
    np.testing.assert_array_equal(cube[0], mr.pixel_array)


def test_numpy_grinder_rescales_pydicom_ct_in_float64() -> None:
    ct = read_testdata("CT_small.dcm")
    cube = NumpyGrinder()([ct])
    assert cube.dtype == np.float64
    np.testing.assert_array_equal(cube[0], ct.pixel_array.astype(np.float64) - 1024)


def test_numpy_grinder_applies_per_slice_pet_slopes_without_float32_rounding() -> None:
    series = make_ct_series(5, rows=8, columns=8, modality="PT")
    slopes = [0.123456789, 1.987654321, 3.3333333333, 0.5, 7.000000123]
    for ds, slope in zip(series, slopes, strict=True):
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
    cube = NumpyGrinder()(shuffled(series))
    expected = np.stack([ds.pixel_array * float(ds.RescaleSlope) for ds in series])
    assert cube.dtype == np.float64
    np.testing.assert_array_equal(cube, expected)
    assert not np.array_equal(cube.astype(np.float32).astype(np.float64), expected)


@pytest.mark.parametrize(
    ("keyword", "dtype"),
    [("FloatPixelData", np.float32), ("DoubleFloatPixelData", np.float64)],
)
def test_numpy_grinder_keeps_float_pixel_data(keyword: str, dtype: type[np.floating[Any]]) -> None:
    series = float_series(3, keyword, dtype)
    cube = NumpyGrinder()(shuffled(series))
    assert cube.dtype == dtype
    for index, ds in enumerate(series):
        np.testing.assert_array_equal(
            cube[index], np.frombuffer(getattr(ds, keyword), dtype).reshape(4, 5)
        )


def test_class_and_function_grinders_differ_only_in_sort_key() -> None:
    series = without_rescale(make_ct_series(4, rows=6, columns=6))
    for number, ds in zip([4, 3, 2, 1], series, strict=True):
        ds.InstanceNumber = number  # numbers run against the slice positions
    by_number = NumpyGrinder()(series)
    by_position = numpy_grinder(iter(series))
    assert by_number.dtype == by_position.dtype == np.uint16
    np.testing.assert_array_equal(by_number, by_position[::-1])


def test_numpy_grinder_without_instance_number_keeps_arrival_order_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    series = shuffled(without_rescale(make_ct_series(3, rows=4, columns=4)))
    for ds in series:
        del ds.InstanceNumber
    with caplog.at_level(logging.WARNING, logger="dicomflow"):
        cube = NumpyGrinder()(series)
    np.testing.assert_array_equal(cube, np.stack([ds.pixel_array for ds in series]))
    assert "Instance Number not present" in caplog.text


def test_numpy_grinder_names_an_instance_without_instance_number() -> None:
    series = make_ct_series(3, rows=4, columns=4)
    del series[2].InstanceNumber
    with pytest.raises(InvalidDataset, match=str(series[2].SOPInstanceUID)):
        NumpyGrinder()(series)


def test_numpy_grinder_refuses_colour_with_not_implemented() -> None:
    series = make_ct_series(2, rows=4, columns=4)
    series[0].SamplesPerPixel = 3
    with pytest.raises(NotImplementedError):
        NumpyGrinder()(series)


@pytest.mark.parametrize(("samples", "logged"), [(4, "retired value"), (12, "invalid value")])
def test_numpy_grinder_logs_and_refuses_other_samples_per_pixel(
    samples: int, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    series = make_ct_series(2, rows=4, columns=4)
    series[0].SamplesPerPixel = samples
    with pytest.raises(InvalidDataset), caplog.at_level(logging.ERROR, logger="dicomflow"):
        NumpyGrinder()(series)
    assert logged in caplog.text


def test_numpy_grinder_refuses_24_bit_allocation() -> None:
    series = make_ct_series(2, rows=4, columns=4)
    for ds in series:
        ds.BitsAllocated = 24
    with pytest.raises(InvalidDataset, match="BitsAllocated 24"):
        NumpyGrinder()(series)


def test_numpy_grinder_names_an_instance_of_another_size() -> None:
    series = without_rescale(make_ct_series(2, rows=4, columns=4))
    other = without_rescale(make_ct_series(1, rows=5, columns=4))[0]
    other.InstanceNumber = 3
    with pytest.raises(InvalidDataset, match=str(other.SOPInstanceUID)):
        NumpyGrinder()([*series, other])


@pytest.mark.parametrize("grinder", [NumpyGrinder(), TagGrinder([0x00100020])])
def test_grinders_refuse_no_instances_with_a_value_error(grinder: Any) -> None:
    with pytest.raises(MissingPivotDataset):
        grinder([])
    assert issubclass(MissingPivotDataset, ValueError)


def test_grinders_accept_a_re_iterable_input_twice() -> None:
    series = make_ct_series(3, rows=4, columns=4)
    grinder = NumpyGrinder()
    np.testing.assert_array_equal(grinder(series), grinder(series))
    assert [ds.InstanceNumber for ds in series] == [1, 2, 3]  # the caller's list is not reordered


def test_identity_and_list_grinders() -> None:
    series = make_ct_series(3)
    assert IdentityGrinder()(series) is series
    listed = ListGrinder()(iter(series))
    assert listed == series and listed is not series


def test_tag_grinder_gives_tag_to_value_of_the_first_instance() -> None:
    ct = read_testdata("CT_small.dcm")
    values = TagGrinder([0x00100020, "Modality", 0x00280030])([ct, Dataset()])
    assert values == {0x00100020: ct.PatientID, "Modality": "CT", 0x00280030: ct.PixelSpacing}


def test_tag_grinder_missing_tag_is_invalid_unless_optional() -> None:
    ct = read_testdata("CT_small.dcm")
    with pytest.raises(InvalidDataset, match=r"\(0010,2000\)"):
        TagGrinder([0x00100020, 0x00102000])([ct])
    assert TagGrinder([0x00100020, 0x00102000], optional=True)([ct]) == {0x00100020: ct.PatientID}


def test_many_grinder_gives_each_grinder_every_instance_of_a_one_shot_iterator() -> None:
    series = make_ct_series(4, rows=4, columns=4)
    one_shot: Iterator[Dataset] = iter(series)
    listed, cube, tree = ManyGrinder(ListGrinder(), NumpyGrinder(), DicomTreeGrinder())(one_shot)
    assert len(listed) == 4 and cube.shape == (4, 4, 4) and tree.images == 4
    identity = ManyGrinder(IdentityGrinder())(series)[0]
    assert identity is series


def test_dicom_tree_grinder_groups_patients() -> None:
    series = make_ct_series(2, patient_id="A") + make_ct_series(3, patient_id="B")
    tree = DicomTreeGrinder()(series)
    assert isinstance(tree, DicomTree)
    assert (tree.images, tree.num_patients(), tree.num_series()) == (5, 2, 2)


def test_series_grinder_gives_a_sorted_dicom_series() -> None:
    series = make_ct_series(4, rows=6, columns=6)
    result = SeriesGrinder()(shuffled(series))
    assert isinstance(result, DicomSeries)
    assert [ds.SOPInstanceUID for ds in result] == [ds.SOPInstanceUID for ds in series]
    assert result.image.raw.dtype == np.float64
    assert result.PatientID == series[0].PatientID


def positioned_series(count: int, rows: int, columns: int) -> list[Dataset]:
    series = make_ct_series(count, rows=rows, columns=columns, modality="MR")
    for ds in series:
        ds.PixelSpacing = [2.0, 3.0]  # rows 2 mm apart, columns 3 mm apart
    return series


def test_nifti_grinder_orders_column_row_slice_with_a_ras_affine() -> None:
    series = positioned_series(5, rows=6, columns=7)
    image = NiftiGrinder()(shuffled(series))
    assert image.shape == (7, 6, 5)
    data = np.asanyarray(image.dataobj)
    assert data.dtype == np.float64  # the CT factory rescales by -1024
    np.testing.assert_array_equal(data[:, :, 2], series[2].pixel_array.T - 1024.0)
    origin = [float(v) for v in series[0].ImagePositionPatient]
    step = float(series[1].ImagePositionPatient[2]) - origin[2]
    expected = np.array(
        [[-3.0, 0, 0, -origin[0]], [0, -2.0, 0, -origin[1]], [0, 0, step, origin[2]], [0, 0, 0, 1]]
    )
    np.testing.assert_allclose(image.affine, expected)


def test_nifti_grinder_saves_under_a_hashed_name_and_reorients(tmp_path: Path) -> None:
    out = tmp_path / "made" / "here"
    image = NiftiGrinder(out, reorient_nifti=True)(positioned_series(3, rows=4, columns=4))
    saved = list(out.iterdir())
    assert len(saved) == 1 and saved[0].name.endswith(".nii.gz")
    assert len(saved[0].name) == 32 + len(".nii.gz")
    assert image.affine[0, 0] > 0 and image.affine[1, 1] > 0  # RAS+


def test_convert_to_nifti_sorts_the_list_and_saves_the_file(tmp_path: Path) -> None:
    series = positioned_series(3, rows=4, columns=4)
    given = shuffled(series)
    image = convert_to_nifti(given, tmp_path / "ct.nii.gz", False)
    assert [ds.SOPInstanceUID for ds in given] == [ds.SOPInstanceUID for ds in series]
    assert Nifti1Image.from_filename(tmp_path / "ct.nii.gz").shape == image.shape == (4, 4, 3)


def test_nifti_grinder_reorienting_needs_an_output_directory() -> None:
    with pytest.raises(IncorrectlyConfigured):
        NiftiGrinder(None, True)


def test_nifti_grinder_names_missing_geometry() -> None:
    series = positioned_series(2, rows=4, columns=4)
    del series[1].PixelSpacing
    with pytest.raises(InvalidDataset, match="PixelSpacing"):
        NiftiGrinder()(series)


def test_nifti_grinder_without_nibabel_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(MissingOptionalDependency, match=r"dicomflow\[nifti\]"):
        NiftiGrinder()


def test_rt_struct_grinder_without_rt_utils_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "rt_utils", None)
    with pytest.raises(MissingOptionalDependency, match=r"dicomflow\[rtstruct\]"):
        RTStructGrinder()


@pytest.fixture
def recording_rt_utils(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the optional rt-utils package: ``RTStruct`` records its arguments."""
    module = types.ModuleType("rt_utils")
    module.__spec__ = ModuleSpec("rt_utils", None)

    class RTStruct:
        def __init__(self, series_data: list[Dataset], ds: Dataset) -> None:
            self.series_data, self.ds = series_data, ds

    module.RTStruct = RTStruct  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rt_utils", module)


@pytest.mark.usefixtures("recording_rt_utils")
def test_rt_struct_grinder_pairs_the_structure_set_with_the_images() -> None:
    rt_struct, ct = read_testdata("rtstruct.dcm"), read_testdata("CT_small.dcm")
    result = RTStructGrinder()([ct, rt_struct])
    assert result.ds is rt_struct and result.series_data == [ct]
    with pytest.raises(InvalidDataset, match="second"):
        RTStructGrinder()([rt_struct, ct, copy.deepcopy(rt_struct)])
    with pytest.raises(MissingPivotDataset):
        RTStructGrinder()([ct])


def test_an_input_hands_its_instances_to_a_grinder_class() -> None:
    class CT(AbstractInput):
        image_grinder = NumpyGrinder()

    source = CT()
    series = without_rescale(make_ct_series(3, rows=4, columns=4))
    for ds in shuffled(series):
        source.add_image(ds)
    cube = source.get_data()
    assert cube.dtype == np.uint16
    np.testing.assert_array_equal(cube, np.stack([ds.pixel_array for ds in series]))
