"""Native Pixel Data against Rows x Columns x samples x frames x bits."""

import warnings
from pathlib import Path

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicomflow.dicom.factory import make_ct_series
from dicomflow.dicom.pixel_length import check_pixel_data_length
from dicomflow.errors import DatasetMismatchError

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"  # pydicom's own, offline


def test_no_pixel_data_of_pydicoms_test_files_is_refused() -> None:
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(TEST_FILES.glob("*.dcm")):
            dataset = dcmread(name, force=True)
            syntax = getattr(dataset.get("file_meta"), "TransferSyntaxUID", None)
            if syntax is not None and "PixelData" in dataset:
                check_pixel_data_length(dataset, UID(syntax))
                checked += 1
    assert checked > 40  # padded (MR_small_padded), subsampled (YBR_FULL_422), 1-bit...


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        pytest.param({"PixelData": bytes(16 * 16 * 2)}, False, id="exact"),
        pytest.param({"PixelData": bytes(16 * 16 * 2 + 2)}, False, id="a-little-padding"),
        pytest.param({"PixelData": bytes(16 * 16 * 2 - 2)}, True, id="short"),
        pytest.param({"PixelData": bytes(16 * 16 * 4)}, True, id="a-frame-too-many"),
        pytest.param({"NumberOfFrames": 3}, True, id="frames-missing"),
        pytest.param({"BitsAllocated": 8}, True, id="bits-allocated-8"),
        pytest.param({"Rows": None}, False, id="without-rows-not-checked"),
    ],
)
def test_pixel_data_length_is_checked(change: dict[str, object], refused: bool) -> None:
    [dataset] = make_ct_series(1, rows=16, columns=16)
    for keyword, value in change.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    if refused:
        with pytest.raises(DatasetMismatchError, match="Pixel Data is"):
            check_pixel_data_length(dataset, ExplicitVRLittleEndian)
    else:
        check_pixel_data_length(dataset, ExplicitVRLittleEndian)


def test_compressed_pixel_data_is_not_checked() -> None:
    dataset = dcmread(get_testdata_file("JPEG2000.dcm"))
    check_pixel_data_length(dataset, UID(dataset.file_meta.TransferSyntaxUID))
