"""Storing a 2-D numpy image as the Image Pixel module of a dataset.

The stored representation follows the image's dtype:

- ``uint8``/``uint16``/``int8``/``int16`` (and ``bool``, as ``uint8``) are stored
  as they are: BitsAllocated 8 or 16, PixelRepresentation 0 (unsigned) or 1
  (signed), no rescaling.
- any other integer or floating image whose values are all whole numbers within
  the ``uint16`` or ``int16`` range is stored losslessly as that type, so a
  ``float32`` volume in Hounsfield units goes back as it came.
- anything else is rescaled into the factory's unsigned range
  (``bits_stored`` bits) with RescaleSlope and RescaleIntercept such that
  ``stored * slope + intercept`` gives back the values.

Where the image is not rescaled but the dataset already carries RescaleSlope
or RescaleIntercept (copied from a parent), or its SOP class requires them
(CT, PET), they are set to the identity (1 and 0), so no stale rescale from a
parent changes the meaning of the stored values.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import DataElement, Dataset
from pydicom.uid import CTImageStorage, PositronEmissionTomographyImageStorage

from dicomflow.errors import ConstructionFailure

_AS_IS: dict[np.dtype[Any], np.dtype[Any]] = {
    np.dtype(np.uint8): np.dtype(np.uint8),
    np.dtype(np.uint16): np.dtype(np.uint16),
    np.dtype(np.int8): np.dtype(np.int8),
    np.dtype(np.int16): np.dtype(np.int16),
    np.dtype(np.bool_): np.dtype(np.uint8),
}
_UNSIGNED = {8: np.uint8, 16: np.uint16, 32: np.uint32}
_RESCALE_REQUIRED = {CTImageStorage, PositronEmissionTomographyImageStorage}


@dataclass(frozen=True)
class EncodedImage:
    """Stored values of one image and how to read them back."""

    stored: npt.NDArray[Any]
    slope: float = 1.0
    intercept: float = 0.0
    rescaled: bool = False


def encode_image(
    image: npt.ArrayLike, bits_stored: int = 16, bits_allocated: int = 16
) -> EncodedImage:
    """Return the stored values of the 2-D ``image`` (see the module for the rules).

    Raises:
        ConstructionFailure: if the image is not 2-D, not numeric, holds NaN or
            infinity, or the bit depths are impossible.
    """
    array = np.asarray(image)
    if array.ndim != 2:
        raise ConstructionFailure(
            f"Only a 2-D image can be stored in a dataset; got shape {array.shape}."
        )
    if array.dtype in _AS_IS:
        return EncodedImage(array.astype(_AS_IS[array.dtype], copy=False))
    if array.dtype.kind not in "iuf":
        raise ConstructionFailure(f"Cannot store an image of dtype {array.dtype} as pixel data.")
    if array.size and not np.isfinite(array).all():
        raise ConstructionFailure("Cannot store an image holding NaN or infinite values.")
    whole = _as_whole_16bit(array)
    if whole is not None:
        return EncodedImage(whole)
    return _rescale(array, bits_stored, bits_allocated)


def _as_whole_16bit(array: npt.NDArray[Any]) -> npt.NDArray[Any] | None:
    if array.size == 0:
        return array.astype(np.uint16)
    low, high = array.min(), array.max()
    if array.dtype.kind == "f" and not np.array_equal(array, np.rint(array)):
        return None
    for target in (np.uint16, np.int16):
        info = np.iinfo(target)
        if info.min <= low and high <= info.max:
            return array.astype(target)
    return None


def _rescale(array: npt.NDArray[Any], bits_stored: int, bits_allocated: int) -> EncodedImage:
    target = _UNSIGNED.get(bits_allocated)
    if target is None or not 1 <= bits_stored <= bits_allocated:
        raise ConstructionFailure(
            f"Cannot rescale into BitsStored {bits_stored} / BitsAllocated {bits_allocated}; "
            "BitsAllocated must be 8, 16 or 32 and BitsStored between 1 and it."
        )
    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high == low:
        return EncodedImage(np.zeros(array.shape, target), 1.0, low, rescaled=True)
    slope = (high - low) / ((1 << bits_stored) - 1)
    stored = np.clip(np.rint((values - low) / slope), 0, (1 << bits_stored) - 1)
    return EncodedImage(stored.astype(target), slope, low, rescaled=True)


def store_image(
    dataset: Dataset,
    image: npt.ArrayLike,
    *,
    bits_stored: int = 16,
    bits_allocated: int = 16,
    photometric_interpretation: str = "MONOCHROME2",
) -> EncodedImage:
    """Encode the 2-D ``image`` and set the Image Pixel module of ``dataset`` to hold it."""
    encoded = encode_image(image, bits_stored, bits_allocated)
    stored = encoded.stored
    signed = stored.dtype.kind == "i"
    bits = stored.dtype.itemsize * 8
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric_interpretation
    dataset.Rows, dataset.Columns = stored.shape
    dataset.BitsAllocated = bits
    dataset.BitsStored = bits_stored if encoded.rescaled else bits
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = int(signed)
    extreme_vr = "SS" if signed else "US"
    if stored.size:
        dataset[0x00280106] = DataElement(0x00280106, extreme_vr, int(stored.min()))
        dataset[0x00280107] = DataElement(0x00280107, extreme_vr, int(stored.max()))
    _set_rescale(dataset, encoded)
    pixel_bytes = stored.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes()
    dataset[0x7FE00010] = DataElement(0x7FE00010, "OB" if bits == 8 else "OW", pixel_bytes)
    return encoded


def _set_rescale(dataset: Dataset, encoded: EncodedImage) -> None:
    needed = (
        encoded.rescaled
        or "RescaleSlope" in dataset
        or "RescaleIntercept" in dataset
        or dataset.get("SOPClassUID") in _RESCALE_REQUIRED
    )
    if needed:
        dataset.RescaleIntercept = _decimal(encoded.intercept)
        dataset.RescaleSlope = _decimal(encoded.slope)


def _decimal(value: float) -> str:
    """``value`` as a DS string of at most 16 characters."""
    text = repr(float(value)) if float(value).is_integer() else f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.9e}"
