"""Part-10 files read directly agree with pydicom: the file meta, where the dataset
starts, the SOP UIDs, and the element headers the one walker yields."""

import struct
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from dicomflow.dicom import part10
from dicomflow.dicom.factory import make_ct_series, write_series

MISLABELLED = {"SC_rgb_jpeg.dcm"}  # its file meta says explicit VR; its dataset is implicit
FILES = []
for _name in sorted(get_testdata_files("*.dcm")):
    if Path(_name).name in MISLABELLED:
        continue
    try:
        _dataset = dcmread(_name, stop_before_pixels=True)
        _ = _dataset.file_meta.TransferSyntaxUID, _dataset.file_meta.MediaStorageSOPClassUID
    except Exception:
        continue
    FILES.append(_name)


def test_enough_files_are_compared() -> None:
    assert len(FILES) > 50


def test_the_long_vr_table_is_the_standards() -> None:
    assert {str(vr).encode() for vr in EXPLICIT_VR_LENGTH_32} == part10.LONG_VRS


@pytest.mark.parametrize("name", FILES, ids=lambda n: Path(n).name)
def test_the_file_meta_is_what_pydicom_reads(name: str) -> None:
    data = Path(name).read_bytes()
    try:
        meta = part10.file_meta(data)
    except ValueError:
        pytest.skip("a file meta without group length: left to pydicom")
    expected, end = part10.decode_file_meta(data)
    assert meta.transfer_syntax == expected.TransferSyntaxUID
    assert meta.sop_class_uid == expected.MediaStorageSOPClassUID
    assert meta.sop_instance_uid == expected.get("MediaStorageSOPInstanceUID", "")
    assert meta.dataset_offset == end


@pytest.mark.parametrize("name", FILES, ids=lambda n: Path(n).name)
def test_the_sop_uids_are_the_datasets(name: str) -> None:
    path = Path(name)
    try:
        meta, head = part10.read_head(path)
    except ValueError:
        pytest.skip("a file meta without group length: left to pydicom")
    dataset = dcmread(path, stop_before_pixels=True)
    sop_class, sop_instance = part10.dataset_sop_uids(
        memoryview(head)[meta.dataset_offset :], meta.transfer_syntax
    )
    if meta.transfer_syntax == DeflatedExplicitVRLittleEndian:
        assert (sop_class, sop_instance) == ("", "")
        return
    assert sop_class in ("", dataset.get("SOPClassUID", ""))
    assert sop_instance in ("", dataset.get("SOPInstanceUID", ""))
    if "SOPInstanceUID" in dataset and len(head) == part10.HEAD_BYTES:
        assert sop_instance == dataset.SOPInstanceUID  # unless something long comes first


@pytest.mark.parametrize("name", FILES, ids=lambda n: Path(n).name)
def test_the_walker_yields_the_tags_pydicom_reads(name: str) -> None:
    data = Path(name).read_bytes()
    try:
        meta = part10.file_meta(data)
    except ValueError:
        pytest.skip("a file meta without group length: left to pydicom")
    syntax = UID(meta.transfer_syntax)
    if syntax.is_deflated:
        pytest.skip("deflated")
    expected = [int(element.tag) for element in dcmread(name)]
    walked = []
    try:
        for element in part10.walk(
            data,
            meta.dataset_offset,
            implicit=syntax.is_implicit_VR,
            big_endian=not syntax.is_little_endian,
        ):
            walked.append(element.group << 16 | element.number)
            if element.length == part10.UNDEFINED_LENGTH:
                break
    except struct.error:
        pytest.skip("cut short")
    assert walked == expected[: len(walked)]
    assert walked[-1] == expected[-1] or element.length == part10.UNDEFINED_LENGTH


def test_a_file_meta_cut_short_is_refused(tmp_path: Path) -> None:
    [path] = write_series(make_ct_series(1, rows=8, columns=8), tmp_path)
    data = path.read_bytes()
    meta = part10.file_meta(data)
    with pytest.raises(ValueError, match="cut short"):
        part10.file_meta(data[:150])
    assert part10.file_meta(data[: meta.dataset_offset - 20]) == meta  # the UIDs came first
    with pytest.raises(ValueError, match="DICM"):
        part10.file_meta(data[1:])


def test_a_file_meta_longer_than_the_head_is_read_whole(tmp_path: Path) -> None:
    [path] = write_series(make_ct_series(1, rows=8, columns=8), tmp_path)
    meta, head = part10.read_head(path, head_bytes=200)
    assert meta.dataset_offset > 200
    assert len(head) >= meta.dataset_offset + 200
    assert part10.sop_class_and_syntax(path) == (meta.sop_class_uid, meta.transfer_syntax)


def test_the_command_uids_come_from_the_dataset_before_the_file_meta(tmp_path: Path) -> None:
    [dataset] = make_ct_series(1, rows=8, columns=8)
    [path] = write_series([dataset], tmp_path)
    data = path.read_bytes()
    meta = part10.file_meta(data)
    lying = part10.FileMeta("1.2.3", "4.5.6", meta.transfer_syntax, meta.dataset_offset)
    uids = part10.sop_uids(lying, memoryview(data)[meta.dataset_offset :])
    assert uids == (dataset.SOPClassUID, dataset.SOPInstanceUID)
    assert part10.sop_uids(lying, b"") == ("1.2.3", "4.5.6")
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        part10.sop_uids(part10.FileMeta("1.2.3", "", meta.transfer_syntax, 0), b"")
