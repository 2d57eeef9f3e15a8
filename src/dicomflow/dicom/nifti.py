"""Convert the instances of one series to a NIfTI-1 image (needs the ``nifti`` extra).

- :func:`series_to_nifti` -- the image, not saved.
- :func:`convert_to_nifti` -- the pipeline library's name: sorts the list given,
  and saves the image to ``output_file`` when one is given.

The data array is indexed (column, row, slice) and the affine maps it to RAS+
millimetres, from ImagePositionPatient, ImageOrientationPatient and
PixelSpacing; slices are sorted along the slice normal. Pixel values keep their
stored type, or are ``float64`` when a rescale changes them.
"""

from importlib import import_module
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom import Dataset

from dicomflow.dicom.grinders import dataset_list_grinder
from dicomflow.dicom.volume import changes_values, safe_uid, stack_frames
from dicomflow.errors import GrinderError, InvalidDataset, MissingOptionalDependency

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


def require_nibabel(user: str) -> None:
    """Raise :class:`MissingOptionalDependency` naming ``user`` if nibabel is absent."""
    if find_spec("nibabel") is None:
        raise MissingOptionalDependency(
            f"{user} needs nibabel, which is not installed; install it with: "
            f'pip install "dicomflow[nifti]"'
        )


def series_to_nifti(datasets: list[Dataset], *, reorient: bool = False) -> Any:
    """Return a ``nibabel.Nifti1Image`` of one series (not saved).

    With ``reorient`` the image is turned to the closest canonical (RAS+) orientation.

    Raises:
        MissingOptionalDependency: if nibabel is not installed.
        InvalidDataset: if the instances are not one series of single-frame
            monochrome images with position, orientation and pixel spacing.
    """
    require_nibabel("Converting to NIfTI")
    nifti1 = import_module("nibabel.nifti1")
    try:
        instances = dataset_list_grinder(datasets)
        volume = stack_frames(instances, rescale=any(changes_values(ds) for ds in instances))
    except GrinderError as exc:
        raise InvalidDataset(str(exc)) from exc
    if volume.shape[0] != len(instances):
        raise InvalidDataset("NIfTI conversion needs single-frame instances.")
    image = nifti1.Nifti1Image(np.ascontiguousarray(volume.transpose(2, 1, 0)), _affine(instances))
    image.header.set_xyzt_units("mm", "sec")
    if reorient:
        image = import_module("nibabel.funcs").as_closest_canonical(image)
    return image


def convert_to_nifti(dicom_array: list[Dataset], output_file: Path | None, reorient: bool) -> Any:
    """Return the NIfTI-1 image of ``dicom_array`` (sorted in place along the slice normal),
    also saved to ``output_file`` when given (see :func:`series_to_nifti`)."""
    image = series_to_nifti(dicom_array, reorient=reorient)
    dicom_array[:] = dataset_list_grinder(dicom_array)
    if output_file is not None:
        image.to_filename(output_file)
    return image


def _affine(instances: list[Dataset]) -> npt.NDArray[np.float64]:
    for instance in instances:
        missing = [keyword for keyword in _GEOMETRY if keyword not in instance]
        if missing:
            raise InvalidDataset(
                f"Instance {safe_uid(instance)} has no {', '.join(missing)}; "
                "NIfTI conversion needs the image geometry."
            )
    first = instances[0]
    orientation = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    row_spacing, column_spacing = (float(value) for value in first.PixelSpacing)
    origin = np.asarray(first.ImagePositionPatient, dtype=np.float64)
    affine = np.eye(4)
    affine[:3, 0] = orientation[:3] * column_spacing
    affine[:3, 1] = orientation[3:] * row_spacing
    affine[:3, 2] = _slice_step(instances, orientation)
    affine[:3, 3] = origin
    return _LPS_TO_RAS @ affine


def _slice_step(instances: list[Dataset], orientation: npt.NDArray[np.float64]) -> Any:
    if len(instances) > 1:
        first = np.asarray(instances[0].ImagePositionPatient, dtype=np.float64)
        last = np.asarray(instances[-1].ImagePositionPatient, dtype=np.float64)
        return (last - first) / (len(instances) - 1)
    thickness = float(instances[0].get("SliceThickness") or 1.0)
    return np.cross(orientation[:3], orientation[3:]) * thickness
