"""Frame offset tables of multi-frame instances and ranged frame reads."""

import copy
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pydicom import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from dicomflow.cod import CODObject, Instance
from dicomflow.cod.frames import frame_spans
from dicomflow.dicom.factory import make_ct_series
from dicomflow.errors import CODNotFoundError

FRAMES = 5


def _multiframe() -> tuple[Dataset, npt.NDArray[np.uint16]]:
    ds = make_ct_series(1, rows=8, columns=10)[0]
    pixels = np.arange(FRAMES * 80, dtype=np.uint16).reshape(FRAMES, 8, 10) * 7
    ds.NumberOfFrames = FRAMES
    ds.PixelData = pixels.tobytes()
    return ds, pixels


def _store(datastore: str, ds: Dataset, path: Path) -> CODObject:
    ds.save_as(path, enforce_file_format=True)
    with CODObject(datastore, ds.StudyInstanceUID, ds.SeriesInstanceUID, lock=True) as cod:
        assert len(cod.append([Instance(str(path))]).new) == 1
        cod.sync()
    return CODObject(datastore, ds.StudyInstanceUID, ds.SeriesInstanceUID, lock=False)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_native_frames(datastore: str, tmp_path: Path, syntax: str) -> None:
    ds, pixels = _multiframe()
    ds.file_meta.TransferSyntaxUID = syntax
    reader = _store(datastore, ds, tmp_path / "mf.dcm")
    uid = str(ds.SOPInstanceUID)
    tables = reader.instance_metadata(uid)["offset_tables"]
    assert tables["CustomOffsetTableLengths"] == [160] * FRAMES
    start = reader.instance_metadata(uid)["headers"]["start_byte"]
    assert tables["CustomOffsetTable"][0] > start
    for k in range(FRAMES):
        assert reader.get_frame(uid, k) == pixels[k].tobytes()


def test_rle_frames_decode(datastore: str, tmp_path: Path) -> None:
    ds, pixels = _multiframe()
    ds.compress(RLELossless, pixels)
    encoded = list(generate_frames(ds.PixelData, number_of_frames=FRAMES))
    reader = _store(datastore, ds, tmp_path / "rle.dcm")
    uid = str(ds.SOPInstanceUID)
    assert "Fragments" not in reader.instance_metadata(uid)["offset_tables"]
    for k in range(FRAMES):
        frame = reader.get_frame(uid, k)
        assert frame == encoded[k]
        single = copy.deepcopy(ds)
        single.NumberOfFrames = 1
        single.PixelData = encapsulate([frame])
        assert np.array_equal(single.pixel_array, pixels[k])


def test_multi_fragment_frames(datastore: str, tmp_path: Path) -> None:
    ds, pixels = _multiframe()
    ds.compress(RLELossless, pixels)
    encoded = list(generate_frames(ds.PixelData, number_of_frames=FRAMES))
    ds.PixelData = encapsulate(encoded, fragments_per_frame=2, has_bot=True)
    reader = _store(datastore, ds, tmp_path / "frag.dcm")
    uid = str(ds.SOPInstanceUID)
    tables = reader.instance_metadata(uid)["offset_tables"]
    assert [len(spans) for spans in tables["Fragments"]] == [2] * FRAMES
    assert [reader.get_frame(uid, k) for k in range(FRAMES)] == encoded


def test_staged_frame_and_errors(datastore: str, tmp_path: Path) -> None:
    ds, pixels = _multiframe()
    path = tmp_path / "mf.dcm"
    ds.save_as(path, enforce_file_format=True)
    cod = CODObject(datastore, ds.StudyInstanceUID, ds.SeriesInstanceUID, lock=False)
    cod.append([Instance(str(path))], dirty=True)
    uid = str(ds.SOPInstanceUID)
    assert cod.get_frame(uid, 4) == pixels[4].tobytes()
    with pytest.raises(CODNotFoundError, match="frame 5"):
        cod.get_frame(uid, 5)


def test_single_frame_has_empty_offset_tables(datastore: str, tmp_path: Path) -> None:
    ds = make_ct_series(1, rows=8, columns=8)[0]
    reader = _store(datastore, ds, tmp_path / "one.dcm")
    uid = str(ds.SOPInstanceUID)
    assert reader.instance_metadata(uid)["offset_tables"] == {}
    with pytest.raises(CODNotFoundError, match="no frame offset tables"):
        reader.get_frame(uid, 0)


def test_frame_spans_of_garbage_is_none() -> None:
    assert frame_spans(b"not dicom") is None
