"""Series thumbnails: JPEG for one frame, MP4 for several, and their anchor metadata."""

import io
import logging

import av
import numpy as np
import pytest
from cod_support import SeriesFactory
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from dicomflow.cod import CODObject
from dicomflow.cod.thumbnail import SIZE, make_thumbnail, render_frames
from dicomflow.dicom.factory import make_ct_series
from dicomflow.errors import CODError


def _decode_jpeg(data: bytes) -> np.ndarray:
    codec = av.CodecContext.create("mjpeg", "r")
    frames = codec.decode(av.Packet(data))
    assert len(frames) == 1
    return frames[0].to_ndarray(format="rgb24")


def _mp4_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _gradient(rows: int = 10, columns: int = 20) -> Dataset:
    """A CT instance without window whose pixels rise left to right (0 .. 4095)."""
    ds = make_ct_series(1, rows=rows, columns=columns)[0]
    row = np.linspace(0, 4095, columns).round().astype(np.uint16)
    ds.PixelData = np.tile(row, (rows, 1)).tobytes()
    return ds


def _rgb(rows: int = 10, columns: int = 20) -> Dataset:
    ds = _gradient(rows, columns)
    del ds.RescaleIntercept, ds.RescaleSlope
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    pixels = np.zeros((rows, columns, 3), dtype=np.uint8)
    pixels[..., 0] = 200
    ds.PixelData = pixels.tobytes()
    return ds


def _palette(rows: int = 10, columns: int = 20) -> Dataset:
    ds = _gradient(rows, columns)
    del ds.RescaleIntercept, ds.RescaleSlope
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ramp = (np.arange(256, dtype=np.uint16) * 257).tobytes()
    zeros = np.zeros(256, dtype=np.uint16).tobytes()
    for color, lut in (("Red", zeros), ("Green", ramp), ("Blue", zeros)):
        setattr(ds, f"{color}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{color}PaletteColorLookupTableData", lut)
    ds.PixelData = np.tile(np.arange(columns, dtype=np.uint8) * 10, (rows, 1)).tobytes()
    return ds


def test_single_frame_is_jpeg_with_anchors() -> None:
    ds = _gradient(rows=10, columns=20)
    data, kind, info = make_thumbnail([ds])
    assert (kind, data[:2]) == ("jpg", b"\xff\xd8")
    assert _decode_jpeg(data).shape == (SIZE, SIZE, 3)
    uid = str(ds.SOPInstanceUID)
    assert info["thumbnail_index_to_instance_frame"] == [[uid, 0]]
    assert info["instances"][uid]["frames"] == [
        {
            "thumbnail_index": 0,
            "anchors": {
                "original_size": {"width": 20, "height": 10},
                "thumbnail_upper_left": {"row": 32, "col": 0},
                "thumbnail_bottom_right": {"row": 95, "col": 127},
            },
        }
    ]


def test_multi_instance_series_is_mp4_in_instance_order() -> None:
    datasets = make_ct_series(4, rows=16, columns=16)
    data, kind, info = make_thumbnail(list(reversed(datasets)))
    assert kind == "mp4"
    frames = _mp4_frames(data)
    assert [frame.shape for frame in frames] == [(SIZE, SIZE, 3)] * 4
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    assert info["thumbnail_index_to_instance_frame"] == [[uid, 0] for uid in uids]


def test_multi_frame_instance_is_mp4_one_entry_per_frame() -> None:
    ds = _gradient(rows=8, columns=8)
    ds.NumberOfFrames = 3
    ds.PixelData = np.zeros((3, 8, 8), dtype=np.uint16).tobytes()
    data, kind, info = make_thumbnail([ds])
    assert kind == "mp4"
    assert len(_mp4_frames(data)) == 3
    uid = str(ds.SOPInstanceUID)
    assert info["thumbnail_index_to_instance_frame"] == [[uid, 0], [uid, 1], [uid, 2]]
    assert [f["thumbnail_index"] for f in info["instances"][uid]["frames"]] == [0, 1, 2]


def test_monochrome1_is_inverted() -> None:
    ds = _gradient()
    normal = render_frames(ds)[0]
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = render_frames(ds)[0]
    assert (normal[0, 0, 0], normal[0, -1, 0]) == (0, 255)
    assert np.array_equal(inverted.astype(int), 255 - normal.astype(int))


def test_window_is_applied_after_rescale() -> None:
    ds = _gradient()
    ds.WindowCenter, ds.WindowWidth = 0, 100  # stored 974 .. 1074 after intercept -1024
    pixels = ds.pixel_array.astype(int) - 1024
    gray = render_frames(ds)[0][..., 0]
    assert np.all(gray[pixels <= -50] == 0)
    assert np.all(gray[pixels >= 50] == 255)


def test_rgb_and_palette_render_at_size() -> None:
    rgb = render_frames(_rgb())[0]
    assert rgb.shape == (10, 20, 3)
    assert np.all(rgb[..., 0] == 200)
    palette = render_frames(_palette())[0]
    assert palette.shape == (10, 20, 3)
    assert np.array_equal(palette[0, :, 1], np.arange(20) * 10)
    assert np.all(palette[..., 0] == 0)
    for ds in (_rgb(), _palette()):
        data, kind, _ = make_thumbnail([ds])
        assert kind == "jpg"
        assert _decode_jpeg(data).shape == (SIZE, SIZE, 3)


def test_no_pixel_data_is_an_error() -> None:
    ds = make_ct_series(1)[0]
    del ds.PixelData
    with pytest.raises(CODError, match="at least one instance"):
        make_thumbnail([ds])


def test_write_thumbnail_beside_metadata(datastore: str, series: SeriesFactory) -> None:
    s = series(3)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.sync()
        info = cod.write_thumbnail()
        assert info["uri"].endswith(f"{s.series_uid}/thumbnail.mp4")
        assert len(_mp4_frames(cod.fs.cat_file(f"{cod.layout.folder}/thumbnail.mp4"))) == 3
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    assert reader.thumbnail == info  # the metadata's thumbnail section
    with pytest.raises(CODError, match="write_thumbnail needs lock=True"):
        reader.write_thumbnail()
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.sync()  # a later sync keeps the section
    assert CODObject(datastore, s.study_uid, s.series_uid, lock=False).thumbnail == info


def _undecodable() -> Dataset:
    """A JPEG 2000 instance whose codestream ends after its SIZ marker."""
    ds = _gradient()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(200)])
    ds["PixelData"].VR = "OB"
    return ds


def test_an_undecodable_instance_is_left_out_in_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken, good = _undecodable(), _gradient()
    caplog.set_level(logging.DEBUG)
    _, kind, info = make_thumbnail([broken, good])
    assert kind == "jpg"
    assert [uid for uid, _ in info["thumbnail_index_to_instance_frame"]] == [good.SOPInstanceUID]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(broken.SOPInstanceUID) in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]
    with pytest.raises(CODError, match=str(broken.SOPInstanceUID)):
        render_frames(broken)
