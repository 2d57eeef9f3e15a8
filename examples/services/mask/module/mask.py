"""Worker of the "mask" job: a derived bone-mask series, sent on by the node."""

from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.uid import generate_uid


def run(jobName, headers, params, added_params, input_dir, output_dir, **kwargs):
    threshold = added_params["measure"]["threshold"]
    series_uid = generate_uid()
    for path in sorted(Path(input_dir).glob("*.dcm")):
        ct = dcmread(path)
        hu = ct.pixel_array * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
        ct.PixelData = (hu > threshold).astype(np.uint16).tobytes()
        ct.RescaleSlope, ct.RescaleIntercept = 1, 0
        ct.SeriesInstanceUID = series_uid
        ct.SOPInstanceUID = generate_uid()
        ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
        ct.SeriesDescription = params["description"]
        ct.ImageComments = f"threshold {threshold} HU"
        ct.save_as(Path(output_dir) / f"{ct.SOPInstanceUID}.dcm")
