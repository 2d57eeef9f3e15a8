"""Pixel cleaning with deid's ``%filter`` rules: a synthetic ultrasound whose Manufacturer
and model match a rule of the shipped graylist has exactly that rule's rectangle blanked
(compressed pixel data is stored uncompressed), a rule file of one's own is applied, and
an instance no rule with regions matches is refused, naming what a rule needs."""

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Pseudonymizer
from dicomflow.dicom.deid.pixel_cleaning import check_rules, clean_pixels
from dicomflow.errors import DeidConfigError, DeidRefusedError

ULTRASOUND = "1.2.840.10008.5.1.4.1.1.6.1"
REASON = "Ultrasound Image Storage often has burned-in text"
GRAY = 200


def ultrasound(model: str = "LOGIQ9", rows: int = 480, columns: int = 800) -> Dataset:
    """A GE LOGIQ9 ultrasound frame: deid's rule "Logiq US (LOGIQ9)" blanks x 0-640, y 0-30."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = ULTRASOUND
    dataset.SOPClassUID = ULTRASOUND
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.PatientID, dataset.PatientName = "US-PATIENT-1", "Sono^Grapher"
    dataset.Modality, dataset.Manufacturer = "US", "GE Healthcare"
    dataset.ManufacturerModelName = model
    dataset.ImageType = ["ORIGINAL", "PRIMARY"]
    pixels = np.full((rows, columns, 3), GRAY, dtype=np.uint8)
    dataset.set_pixel_data(pixels, "RGB", 8, generate_instance_uid=False)
    return dataset


def jpeg_baseline(dataset: Dataset) -> Dataset:
    buffer = io.BytesIO()
    Image.fromarray(dataset.pixel_array).save(buffer, "JPEG", quality=95)
    dataset.PixelData = encapsulate([buffer.getvalue()])
    dataset["PixelData"].VR = "OB"
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.PhotometricInterpretation = "YBR_FULL_422"
    return dataset


def blanked(pixels: np.ndarray) -> np.ndarray:
    """Where ``pixels`` (rows, columns, samples) are black."""
    result: np.ndarray = (pixels == 0).all(axis=-1)
    return result


def rectangle(shape: tuple[int, ...], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_the_shipped_rule_of_a_logiq9_blanks_exactly_its_rectangle(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # nothing of it is written
    dataset = ultrasound()

    clean_pixels(dataset, ("deid",), REASON)

    pixels = dataset.pixel_array
    assert (blanked(pixels) == rectangle(pixels.shape, 0, 0, 640, 30)).all()
    assert (pixels[~blanked(pixels)] == GRAY).all()
    assert dataset.BurnedInAnnotation == "NO"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compress", ["rle", "jpeg"])
def test_compressed_pixels_are_stored_uncompressed_once_cleaned(compress: str):
    dataset = ultrasound(rows=120, columns=700)
    if compress == "rle":
        dataset.compress(RLELossless, generate_instance_uid=False)
    else:
        jpeg_baseline(dataset)

    clean_pixels(dataset, ("deid",), REASON)

    assert dataset.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert dataset.PhotometricInterpretation == "RGB"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    pixels = dcmread(io.BytesIO(buffer.getvalue())).pixel_array
    assert (blanked(pixels) == rectangle(pixels.shape, 0, 0, 640, 30)).all()
    assert np.abs(pixels[30:].astype(int) - GRAY).max() <= 2  # lossy JPEG is near, RLE equal


def test_an_instance_no_rule_matches_is_refused_naming_its_device():
    dataset = ultrasound(model="VividQ-Unknown")
    before = dataset.PixelData

    with pytest.raises(DeidRefusedError) as refused:
        clean_pixels(dataset, ("deid",), REASON)

    message = str(refused.value)
    assert "'GE Healthcare'" in message and "'VividQ-Unknown'" in message
    assert ULTRASOUND in message and REASON in message and "deid_pixel_cleaning" in message
    assert "US-PATIENT-1" not in message and "Sono" not in message
    assert dataset.PixelData == before and "BurnedInAnnotation" not in dataset


RULES = """FORMAT dicom

%filter graylist

LABEL Flags only, no region
  contains Manufacturer Acme

LABEL Acme scanner header band
  contains Modality US
  + contains ManufacturerModelName AcmeScan 3000
  coordinates 10,20,30,40
"""


def test_a_rule_file_of_ones_own_is_applied(tmp_path: Path):
    rules = tmp_path / "site.deid"
    rules.write_text(RULES)
    dataset = ultrasound(model="AcmeScan 3000", rows=64, columns=64)

    clean_pixels(dataset, ("deid", str(rules)), REASON)  # the shipped rules match nothing

    pixels = dataset.pixel_array
    assert (blanked(pixels) == rectangle(pixels.shape, 10, 20, 30, 40)).all()


def test_a_rule_that_names_no_region_does_not_clear_an_instance(tmp_path: Path):
    rules = tmp_path / "site.deid"
    rules.write_text(RULES)
    dataset = ultrasound(model="Other")
    dataset.Manufacturer = "Acme"

    with pytest.raises(DeidRefusedError):
        clean_pixels(dataset, (str(rules),), REASON)


@pytest.mark.parametrize("content", [None, "FORMAT dicom\n\n%header\n\nREMOVE PatientID\n"])
def test_a_rule_source_that_cannot_be_used_names_the_setting(tmp_path: Path, content):
    source = tmp_path / "rules.deid"
    if content is not None:
        source.write_text(content)

    with pytest.raises(DeidConfigError, match="deid_pixel_cleaning"):
        check_rules([str(source)])


def test_the_deidentifier_cleans_with_the_rules_of_its_profile():
    profile = DeidProfile.from_names(pixel_cleaning=["deid"])
    deidentifier = Deidentifier(profile, Pseudonymizer(b"k" * 32))
    buffer = io.BytesIO()
    ultrasound().save_as(buffer, enforce_file_format=True)

    data, identity = deidentifier.deidentify_bytes(buffer.getvalue())

    result = dcmread(io.BytesIO(data))
    assert result.SOPInstanceUID == identity.sop_instance_uid
    assert blanked(result.pixel_array)[:30, :640].all()
    assert result.BurnedInAnnotation == "NO"
    codes = {item.CodeValue for item in result.DeidentificationMethodCodeSequence}
    assert "113101" in codes  # Clean Pixel Data Option
    with pytest.raises(DeidRefusedError, match="no pixel-cleaning rule"):
        plain = Deidentifier(DeidProfile.from_names(), Pseudonymizer(b"k" * 32))
        plain.deidentify_bytes(buffer.getvalue())
