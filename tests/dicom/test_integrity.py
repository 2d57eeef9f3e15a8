"""The fast little-endian scan of ``decode_complete`` yields exactly the elements
pydicom's own reader does, and refuses every cut-short encoding."""

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.dataelem import RawDataElement
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.uid import UID

from dicomflow.dicom.inflate import unlimited
from dicomflow.dicom.integrity import _scan_little_endian, decode_complete
from dicomflow.errors import TruncatedDatasetError

LITTLE_ENDIAN_FILES = []
for _name in sorted(get_testdata_files()):
    if not _name.endswith(".dcm"):
        continue
    try:
        _meta = dcmread(_name, stop_before_pixels=True).file_meta
        _syntax = UID(_meta.TransferSyntaxUID)
    except Exception:
        continue
    if _syntax.is_little_endian and not _syntax.is_deflated:
        LITTLE_ENDIAN_FILES.append(_name)


def dataset_bytes(name: str) -> tuple[bytes, UID]:
    """The encoded dataset of a Part-10 file, after its file meta, and its syntax."""
    data = Path(name).read_bytes()
    stream = BytesIO(data)
    read_preamble(stream, False)
    meta = _read_file_meta_info(stream)
    return data[stream.tell() :], UID(meta.TransferSyntaxUID)


def pydicom_elements(data: bytes, syntax: UID) -> tuple[list[object], int]:
    """What pydicom's reader yields (sequences by their repr) and where it stopped."""
    stream = BytesIO(data)
    found: list[object] = []
    end = 0
    for element in data_element_generator(
        stream, syntax.is_implicit_VR, syntax.is_little_endian, defer_size=None
    ):
        found.append(element if isinstance(element, RawDataElement) else repr(element))
        end = stream.tell()
    return found, end


def test_enough_files_are_compared():
    assert len(LITTLE_ENDIAN_FILES) > 50


@pytest.mark.parametrize("name", LITTLE_ENDIAN_FILES, ids=lambda n: Path(n).name)
def test_the_scan_yields_what_pydicom_reads(name: str):
    data, syntax = dataset_bytes(name)
    try:
        expected = pydicom_elements(data, syntax)
    except Exception:
        pytest.skip("pydicom cannot read this dataset either")
    try:
        elements, end = _scan_little_endian(memoryview(data), syntax.is_implicit_VR, unlimited)
    except TruncatedDatasetError:
        pytest.skip("the file itself is cut short (some pydicom test files are)")
    found = [
        element if isinstance(element, RawDataElement) else repr(element)
        for element in elements.values()
    ]
    assert (found, end) == expected


@pytest.mark.parametrize("name", LITTLE_ENDIAN_FILES, ids=lambda n: Path(n).name)
def test_a_cut_inside_any_element_is_refused(name: str):
    data, syntax = dataset_bytes(name)
    try:
        elements, _end = pydicom_elements(data, syntax)
        decode_complete(data, syntax)
    except Exception:
        pytest.skip("the file itself cannot be read whole")
    inside = [
        element.value_tell + element.length // 2
        for element in elements
        if isinstance(element, RawDataElement) and 2 <= element.length < 0xFFFFFFFF
    ]
    for cut in inside[:: max(1, len(inside) // 6)]:
        with pytest.raises(TruncatedDatasetError):
            decode_complete(data[:cut], syntax)


def test_long_binary_values_are_shared_and_long_texts_reserved() -> None:
    """Pixel data and a long OB are views into the data; a long UT is copied once its
    memory is reserved, and a refused reservation refuses the instance."""
    from pydicom import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import ExplicitVRLittleEndian

    from dicomflow.errors import InstanceTooLargeError

    dataset = Dataset()
    dataset.add_new(0x00091010, "OB", b"\x01" * 100_000)
    dataset.add_new(0x00204000, "LT", "x" * 10_000)
    dataset.add_new(0x00409210, "UT", "y" * 100_000)
    dataset.add_new(0x7FE00010, "OB", b"\x02" * 200_000)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    data = bytearray(buffer.getvalue())
    reserved: list[int] = []
    decoded = decode_complete(
        data, ExplicitVRLittleEndian, reserve=lambda n: reserved.append(n) is None
    )
    assert isinstance(decoded[0x7FE00010].value, memoryview)
    assert isinstance(decoded[0x00091010].value, memoryview)
    assert decoded[0x00409210].value == "y" * 100_000
    assert reserved == [100_000]
    with pytest.raises(InstanceTooLargeError, match="maximum_held_bytes"):
        decode_complete(data, ExplicitVRLittleEndian, reserve=lambda n: False)
