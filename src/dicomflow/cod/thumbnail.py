"""Series thumbnails: a JPEG for one frame, an MP4 for several (PyAV, extra ``archive``).

Frames are ordered by InstanceNumber, then frame number; each is rendered to
8-bit RGB (monochrome: modality LUT, then VOI LUT, window or min/max, and
MONOCHROME1 inverted; palette color through its LUT) and fitted, aspect kept,
centred on a black ``size`` x ``size`` square. The thumbnail metadata::

    {"version": "1.0",
     "thumbnail_index_to_instance_frame": [[sop_instance_uid, frame_index], ...],
     "instances": {sop_instance_uid: {"frames": [{"thumbnail_index": int, "anchors": {
         "original_size": {"width": int, "height": int},
         "thumbnail_upper_left": {"row": int, "col": int},
         "thumbnail_bottom_right": {"row": int, "col": int}}}, ...]}}}

Anchor corners are inclusive pixel positions in the thumbnail.
"""

import importlib.util
import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

from dicomflow.dicom.decoding import decoder_failures_unlogged, one_line
from dicomflow.errors import CODError

if TYPE_CHECKING:
    from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

VERSION = "1.0"
SIZE = 128
FRAME_RATE = 10
Image = npt.NDArray[np.uint8]


def make_thumbnail(
    datasets: Sequence[Dataset], size: int = SIZE
) -> tuple[bytes, str, dict[str, Any]]:
    """Return (data, kind, thumbnail metadata); kind is ``"jpg"`` or ``"mp4"``.

    Raises:
        CODError: if no dataset has pixel data, or ``size`` is not even and positive.
    """
    if size <= 0 or size % 2:
        raise CODError(f"Thumbnail size {size} is not an even positive number of pixels.")
    images: list[Image] = []
    index: list[list[str | int]] = []
    instances: dict[str, Any] = {}
    for ds in sorted(datasets, key=_instance_number):
        uid = str(ds.SOPInstanceUID)
        try:
            rendered_frames = render_frames(ds)
        except CODError as exc:
            logger.warning("thumbnail leaves out an instance: %s", exc)
            continue
        for frame_index, rendered in enumerate(rendered_frames):
            image, anchors = fit(rendered, size)
            entry = {"thumbnail_index": len(images), "anchors": anchors}
            instances.setdefault(uid, {"frames": []})["frames"].append(entry)
            index.append([uid, frame_index])
            images.append(image)
    if not images:
        raise CODError(
            "A thumbnail needs at least one instance with pixel data that can be decoded;"
            " none given."
        )
    if importlib.util.find_spec("av") is None:
        raise CODError("Thumbnails need PyAV; install the dicomflow[archive] extra.")
    data, kind = (encode_jpeg(images[0]), "jpg") if len(images) == 1 else (_mp4(images), "mp4")
    info = {"version": VERSION, "thumbnail_index_to_instance_frame": index, "instances": instances}
    return data, kind, info


def _instance_number(ds: Dataset) -> int:
    try:
        return int(ds.get("InstanceNumber", 0) or 0)
    except (TypeError, ValueError):
        return 0


def render_frames(ds: Dataset) -> list[Image]:
    """Return the frames of an instance as 8-bit RGB arrays (rows, columns, 3).

    Raises:
        CODError: if the pixel data cannot be decoded or rendered, in one line (pydicom's
            traceback for each decoder that failed is not logged).
    """
    if "PixelData" not in ds:
        return []
    try:
        with decoder_failures_unlogged():
            pixels = ds.pixel_array
        single = int(ds.get("NumberOfFrames", 1) or 1) == 1
        frames = [pixels] if single else list(pixels)
        return [_rgb(frame, ds) for frame in frames]
    except Exception as exc:  # any decoder or LUT failure: this instance cannot be rendered
        uid = ds.get("SOPInstanceUID", "?")
        raise CODError(f"Instance {uid} cannot be rendered: {one_line(exc)}.") from None


def _rgb(frame: npt.NDArray[Any], ds: Dataset) -> Image:
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        colors = apply_color_lut(frame, ds)
        return _to_8_bits(colors, 8 * colors.dtype.itemsize)
    if frame.ndim == 3:
        return _to_8_bits(frame, int(ds.get("BitsStored", 8)))
    gray = _grayscale(frame, ds)
    if photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def _to_8_bits(frame: npt.NDArray[Any], bits: int) -> Image:
    if frame.dtype == np.uint8:
        return np.asarray(frame, dtype=np.uint8)
    bits = 16 if frame.max(initial=0) > (1 << bits) - 1 else bits
    return (frame.astype(np.float64) * 255 / ((1 << bits) - 1)).round().astype(np.uint8)


def _grayscale(frame: npt.NDArray[Any], ds: Dataset) -> Image:
    values = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    if "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
        low, high = float(values.min()), float(values.max())
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        low, high = center - width / 2, center + width / 2
    else:
        low, high = float(values.min()), float(values.max())
    scaled = (values - low) * 255 / max(high - low, 1e-9)
    return np.clip(scaled, 0, 255).round().astype(np.uint8)


def _first(value: Any) -> float:
    """Return the first value of a multi-valued DS, or the value itself."""
    return float(value[0] if isinstance(value, MultiValue) else value)


def fit(image: Image, size: int) -> tuple[Image, dict[str, Any]]:
    """Return ``image`` scaled (nearest pixel) and centred in a square, with its anchors."""
    rows, columns = image.shape[:2]
    scale = size / max(rows, columns)
    height, width = max(1, round(rows * scale)), max(1, round(columns * scale))
    row_index = np.arange(height) * rows // height
    column_index = np.arange(width) * columns // width
    top, left = (size - height) // 2, (size - width) // 2
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[top : top + height, left : left + width] = image[row_index][:, column_index]
    anchors = {
        "original_size": {"width": columns, "height": rows},
        "thumbnail_upper_left": {"row": top, "col": left},
        "thumbnail_bottom_right": {"row": top + height - 1, "col": left + width - 1},
    }
    return canvas, anchors


def encode_jpeg(image: Image) -> bytes:
    """Encode an 8-bit RGB image as JPEG (PyAV); odd sizes are padded by one pixel."""
    import av

    rows, columns = image.shape[:2]
    image = np.pad(image, ((0, rows % 2), (0, columns % 2), (0, 0)), mode="edge")
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = "yuvj420p"
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
    packets = codec.encode(frame) + codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)


def encode_png(image: Image) -> bytes:
    """Encode an 8-bit RGB image as PNG (PyAV)."""
    import av

    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return b"".join(bytes(packet) for packet in codec.encode(frame) + codec.encode(None))


def _mp4(images: list[Image]) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = cast("VideoStream", container.add_stream(_video_codec(), rate=FRAME_RATE))
        stream.width, stream.height = images[0].shape[1], images[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for image in images:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _video_codec() -> str:
    """Return ``libx264`` when the PyAV build has it, else ``mpeg4``."""
    import av

    try:
        av.codec.Codec("libx264", "w")
    except av.codec.codec.UnknownCodecError:
        return "mpeg4"
    return "libx264"
