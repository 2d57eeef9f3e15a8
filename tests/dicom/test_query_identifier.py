"""C-FIND/C-MOVE/C-GET identifiers read as a level and matching keys, and answered."""

import struct

import pytest
from pydicom import Dataset
from pydicom.dataset import Dataset as Item
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from dicomflow.dicom.matching import Key
from dicomflow.dicom.query_identifier import (
    check_retrieval,
    parse_identifier,
    response_identifier,
)
from dicomflow.errors import InvalidQueryDataset, QueryKeyError, UnknownQueryLevelError


def identifier(level: str = "STUDY", **keys: object) -> Dataset:
    dataset = Dataset()
    dataset.QueryRetrieveLevel = level
    for name, value in keys.items():
        setattr(dataset, name, value)
    return dataset


def keys_of(dataset: Dataset, model: str = "STUDY_ROOT") -> dict[str, str]:
    return {key.tag: key.value for key in parse_identifier(dataset, model).query.keys}


def test_non_empty_elements_are_keys_and_empty_ones_return_keys() -> None:
    parsed = parse_identifier(
        identifier(PatientName="DOE^J*", StudyDate="20240101-20240131", StudyDescription=""),
        "STUDY_ROOT",
    )
    assert parsed.level == "STUDY"
    assert {(k.tag, k.vr, k.value) for k in parsed.query.keys} == {
        ("00100010", "PN", "DOE^J*"),
        ("00080020", "DA", "20240101-20240131"),
    }
    assert parsed.query.include == {"00081030"}


def test_level_and_character_set_are_not_keys() -> None:
    dataset = identifier(SpecificCharacterSet="ISO_IR 192", StudyInstanceUID="1.2.3")
    assert keys_of(dataset) == {"0020000D": "1.2.3"}


def test_uid_lists_join_with_backslash_and_match_any() -> None:
    dataset = identifier(StudyInstanceUID=["1.2.3", "1.2.4"])
    parsed = parse_identifier(dataset, "STUDY_ROOT")
    assert keys_of(dataset) == {"0020000D": "1.2.3\\1.2.4"}
    key = parsed.query.keys[0]
    assert key.matches({"0020000D": {"vr": "UI", "Value": ["1.2.4"]}})
    assert not key.matches({"0020000D": {"vr": "UI", "Value": ["1.2.5"]}})


def test_code_string_lists_match_any() -> None:
    dataset = identifier(ModalitiesInStudy=["CT", "MR"])
    key = parse_identifier(dataset, "STUDY_ROOT").query.keys[0]
    assert key == Key("00080061", "CS", "CT,MR")
    assert key.matches({"00080061": {"vr": "CS", "Value": ["MR"]}})


def test_sequences_are_return_keys_only() -> None:
    item = Item()
    item.CodeValue = "X"
    dataset = identifier(ProcedureCodeSequence=[item])
    parsed = parse_identifier(dataset, "STUDY_ROOT")
    assert parsed.query.keys == []
    assert parsed.query.include == {"00081032"}


def test_private_elements_are_ignored() -> None:
    dataset = identifier(PatientID="P1")
    dataset.add_new(0x00091010, "LO", "secret")
    assert keys_of(dataset) == {"00100020": "P1"}


@pytest.mark.parametrize(
    ("model", "level"),
    [
        ("STUDY_ROOT", "PATIENT"),
        ("STUDY_ROOT", ""),
        ("PATIENT_ROOT", "FRAME"),
        ("PATIENT_ROOT", "../x"),
        ("PATIENT_ROOT", "A" * 10_000),
    ],
)
def test_unknown_levels_are_refused_naming_the_attribute(model: str, level: str) -> None:
    with pytest.raises(UnknownQueryLevelError, match="QueryRetrieveLevel"):
        parse_identifier(identifier(level), model)


def test_no_level_is_refused() -> None:
    with pytest.raises(UnknownQueryLevelError, match="QueryRetrieveLevel"):
        parse_identifier(Dataset(), "PATIENT_ROOT")


def test_patient_root_has_patient_level_and_keys_above_the_level() -> None:
    parsed = parse_identifier(identifier("SERIES", PatientID="P1", Modality="CT"), "PATIENT_ROOT")
    assert parsed.level == "SERIES"
    assert {k.tag for k in parsed.query.keys} == {"00100020", "00080060"}
    assert parse_identifier(identifier("PATIENT"), "PATIENT_ROOT").level == "PATIENT"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PatientName", "A" * 10_000, "characters long"),
        ("PatientID", "ab\x00cd", "NUL"),
        ("StudyInstanceUID", "1.2" * 30_000, "characters long"),
    ],
)
def test_hostile_values_are_refused_naming_the_attribute(
    name: str, value: str, problem: str
) -> None:
    with pytest.raises(QueryKeyError, match=f"{name}.*{problem}"):
        parse_identifier(identifier(**{name: value}), "STUDY_ROOT")


@pytest.mark.parametrize("value", ["../x", "/etc", "*", "?*?*?*", "*" * 500])
def test_odd_values_are_kept_as_match_text(value: str) -> None:
    assert keys_of(identifier(PatientID=value)) == {"00100020": value}


def raw_identifier(element: bytes) -> Dataset:
    """An identifier decoded from explicit VR little endian bytes holding ``element``."""
    level = struct.pack("<HH2sH", 0x0008, 0x0052, b"CS", 6) + b"STUDY "
    return read_dataset(DicomBytesIO(level + element), is_implicit_VR=False, is_little_endian=True)


def test_an_undecodable_element_is_refused_naming_it() -> None:
    rows = struct.pack("<HH2sH", 0x0028, 0x0010, b"US", 3) + b"\x01\x02\x03"
    with pytest.raises(InvalidQueryDataset, match="00280010"):
        parse_identifier(raw_identifier(rows), "STUDY_ROOT")


def test_binary_garbage_with_a_nul_is_refused_naming_the_attribute() -> None:
    date = struct.pack("<HH2sH", 0x0008, 0x0020, b"DA", 4) + b"\xff\xfe\x00\x01"
    with pytest.raises(QueryKeyError, match="StudyDate"):
        parse_identifier(raw_identifier(date), "STUDY_ROOT")


@pytest.mark.parametrize(
    ("keys", "accepted"),
    [
        ({"StudyInstanceUID": "1.2.3"}, True),
        ({"StudyInstanceUID": ["1.2.3", "1.2.4"]}, True),
        ({"StudyInstanceUID": ""}, False),
        ({"StudyInstanceUID": "*"}, False),
        ({"StudyInstanceUID": "1.2.*"}, False),
        ({"PatientID": "P1"}, False),
        ({}, False),
    ],
)
def test_a_retrieval_names_what_it_retrieves(keys: dict[str, object], accepted: bool) -> None:
    parsed = parse_identifier(identifier("STUDY", **keys), "STUDY_ROOT")
    if accepted:
        check_retrieval(parsed)
    else:
        with pytest.raises(InvalidQueryDataset, match="0020000D"):
            check_retrieval(parsed)


RESULT = {
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jörg"}]},
    "00100020": {"vr": "LO", "Value": ["P1"]},
    "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
    "00080020": {"vr": "DA", "Value": ["20240115"]},
    "00201208": {"vr": "IS", "Value": [3]},
    "00280010": {"vr": "US", "Value": [512]},
    "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulk"},
}


def test_response_holds_the_identifiers_keys_with_the_matchs_values() -> None:
    request = identifier(PatientID="", StudyInstanceUID="", NumberOfStudyRelatedInstances="")
    request.StudyDescription = ""
    response = response_identifier(request, "STUDY", RESULT, "NODE")
    assert response.PatientID == "P1"
    assert response.StudyInstanceUID == "1.2.3"
    assert response.NumberOfStudyRelatedInstances == 3
    assert response.StudyDescription in ("", None)
    assert "PatientName" not in response  # not asked for
    assert response.QueryRetrieveLevel == "STUDY"
    assert response.RetrieveAETitle == "NODE"
    assert "SpecificCharacterSet" not in response


def test_response_with_non_ascii_text_is_utf8_and_encodes() -> None:
    request = identifier(PatientName="M*")
    response = response_identifier(request, "STUDY", RESULT, "NODE")
    assert response.SpecificCharacterSet == "ISO_IR 192"
    assert str(response.PatientName) == "Müller^Jörg"
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, response)
    assert "Müller".encode() in buffer.getvalue()


def test_response_drops_bulk_data() -> None:
    request = identifier("IMAGE")
    request.PixelData = None
    response = response_identifier(request, "IMAGE", RESULT, "NODE")
    assert response["PixelData"].is_empty


def test_a_stored_value_pydicom_refuses_is_answered_empty() -> None:
    result = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": {"not": "a name"}}]}}
    response = response_identifier(identifier(PatientName=""), "STUDY", result, "NODE")
    assert response["PatientName"].is_empty
