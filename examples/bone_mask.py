"""Example pipeline: a bone mask.

Receives a CT series, thresholds it at 300 HU and sends a derived series (the
mask, 0/1) to the endpoint. Run it with ``python examples/bone_mask.py`` or
``dicomflow serve examples/bone_mask.py``; ``make demo`` runs it end to end.
"""

import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from dicomflow.dicom.grinders import dataset_list_grinder
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor, Address

BONE_HU = 300


class CTSeries(AbstractInput):
    required_tags = ["SOPInstanceUID", "PixelData", "ImagePositionPatient"]
    required_values = {"Modality": "CT"}
    image_grinder = staticmethod(dataset_list_grinder)

    def validate(self) -> bool:
        return self.images >= 1


def bone_mask(ct: Dataset, series_uid: str) -> Dataset:
    """Turn one CT slice into its bone mask, as a derived instance of a new series."""
    slope = float(getattr(ct, "RescaleSlope", 1))
    intercept = float(getattr(ct, "RescaleIntercept", 0))
    mask = (ct.pixel_array * slope + intercept > BONE_HU).astype(np.uint16)
    ct.PixelData = mask.tobytes()
    ct.RescaleSlope, ct.RescaleIntercept = 1, 0
    ct.SeriesInstanceUID = series_uid
    ct.SOPInstanceUID = generate_uid()
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    ct.SeriesDescription = "Bone mask (dicomflow example)"
    ct.ImageType = ["DERIVED", "SECONDARY"]
    return ct


class BoneMaskPipeline(AbstractPipeline):
    ip = "127.0.0.1"
    port = 11112
    ae_title = "DICOMFLOW"
    root_data_directory = "dicomflow-data"
    input = {"ct": CTSeries}
    endpoints = [Address(ip="127.0.0.1", port=11113, ae_title="PACS")]

    class Processor(AbstractProcessor):
        def process(self, input_container):  # type: ignore[no-untyped-def]
            series_uid = generate_uid()
            return [bone_mask(ct, series_uid) for ct in input_container["ct"]]


if __name__ == "__main__":
    BoneMaskPipeline()
