"""C-FIND answers encoded from the catalog's DICOM JSON: the same bytes pydicom writes
for the answer it builds, trimmed to the identifier (VRs, order, padding, lengths,
character set), in both little endian syntaxes; pydicom's encoding where the encoder
does not write a value."""

from typing import Any

import pytest
from pydicom import Dataset
from pydicom.dataset import Dataset as Item
from pydicom.valuerep import PersonName

from dicomflow.dicom.matching import DicomJson
from dicomflow.dicom.query_identifier import response_identifier
from dicomflow.dicom.response_encoder import ResponsePlan
from dicomflow.net.qr_scp import decoded, encoded_match

SYNTAXES = {True: "1.2.840.10008.1.2", False: "1.2.840.10008.1.2.1"}
AE_TITLE = "DICOMFLOW"


def identifier(level: str = "STUDY", **keys: Any) -> Dataset:
    dataset = Dataset()
    dataset.QueryRetrieveLevel = level
    for name, value in keys.items():
        setattr(dataset, name, value)
    return dataset


def study_keys(**extra: Any) -> Dataset:
    keywords = [
        "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
        "StudyDescription", "ReferringPhysicianName", "PatientName", "PatientID",
        "PatientBirthDate", "PatientSex", "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ]  # fmt: skip
    return identifier(**{keyword: "" for keyword in keywords}, **extra)


def element(vr: str, *values: Any) -> DicomJson:
    return {"vr": vr, "Value": list(values)}


def pydicom_bytes(request: Dataset, result: DicomJson, implicit: bool) -> bytes:
    """What the acceptor sent before: pydicom's answer, trimmed, encoded by pydicom."""
    level = str(request.QueryRetrieveLevel)
    return encoded_match(response_identifier(request, level, result, AE_TITLE), request, implicit)


def ours(request: Dataset, result: DicomJson, implicit: bool) -> bytes | None:
    plan = ResponsePlan(request, str(request.QueryRetrieveLevel), AE_TITLE)
    return plan.answer(result).encoded(implicit)


STUDY = {
    "0020000D": element("UI", "1.2.826.0.1.3680043.8.498.1"),  # odd: NUL padded
    "00080020": element("DA", "20230415"),
    "00080030": element("TM", "154400.123"),  # odd: space padded
    "00080050": element("SH", "A1"),
    "00200010": element("SH", "7"),
    "00081030": element("LO", "MR HEART"),
    "00080090": element("PN", {"Alphabetic": "Doe^Jane"}),
    "00100010": element("PN", {"Alphabetic": "Smith^John"}),
    "00100020": element("LO", "P0000001"),
    "00100030": element("DA", "19750919"),
    "00100040": element("CS", "F"),
    "00080061": element("CS", "CT", "MR", "SR"),
    "00201206": element("IS", 3),
    "00201208": element("IS", 120),
}


def name_sent_as_lo() -> Dataset:
    dataset = identifier(PatientID="")
    dataset.add_new(0x00100010, "LO", "")  # the answer's VR is the catalog's: PN
    dataset.add_new(0x00091001, "LO", "")  # private: answered empty, as the peer sent it
    return dataset


CASES: dict[str, tuple[Dataset, DicomJson]] = {
    "a key sent with another vr": (
        name_sent_as_lo(),
        {"00100010": element("PN", {"Alphabetic": "Doe^Jo"}), "00100020": element("LO", "P")},
    ),
    "ascii study": (study_keys(), STUDY),
    "utf-8 names": (
        study_keys(),
        {
            **STUDY,
            "00100010": element(
                "PN",
                {
                    "Alphabetic": "Yamada^Tarou",
                    "Ideographic": "山田^太郎",
                    "Phonetic": "やまだ^たろう",
                },
            ),
            "00080090": element("PN", {"Alphabetic": "Müller^Jürgen"}),
            "00081030": element("LO", "Ärztlicher Befund"),
            "00080050": element("SH", "Ø1"),
        },
    ),
    "name groups": (
        study_keys(),
        {
            **STUDY,
            "00100010": element("PN", {"Alphabetic": "A^B", "Phonetic": "ab"}),
            "00080090": element("PN", {"Ideographic": "東^京"}, {"Alphabetic": "X^Y"}),
        },
    ),
    "multi-valued": (
        study_keys(),
        {
            **STUDY,
            "0020000D": element("UI", "1.2.3", "1.2.44"),
            "00080061": element("CS", "CT", "MR"),
            "00100020": element("LO", "P1", "P22", "P333"),
        },
    ),
    "empty values": (
        study_keys(),
        {
            "0020000D": element("UI", "1.2.3"),
            "00080020": {"vr": "DA"},
            "00080030": {"vr": "TM", "Value": []},
            "00100010": {"vr": "PN", "BulkDataURI": "http://x/y"},
            "00100020": element("LO", ""),
        },
    ),
    "numbers": (
        identifier(
            "IMAGE",
            InstanceNumber="",
            SliceThickness="",
            PixelSpacing="",
            Rows=None,
            Columns=None,
            SliceLocation="",
            NumberOfFrames="",
            ReferencedFrameNumber=None,
        ),
        {
            "00200013": element("IS", -5),
            "00180050": element("DS", 1.5),
            "00280030": element("DS", 0.1, 2),
            "00280010": element("US", 512),
            "00280011": element("US", 65535),
            "00201041": element("DS", "1.50"),
            "00280008": element("IS", "42"),
            "00081160": element("IS", 1, 22, 333),
        },
    ),
    "binary numbers": (
        identifier(
            "IMAGE",
            SmallestImagePixelValue=None,
            FrameTime=None,
            ContrastBolusT1Relaxivity=None,
            ContrastBolusInjectionDelay=None,
            TriggerSamplePosition=None,
            ReferencePixelX0=None,
        ),
        {
            "00280106": element("SS", -2),
            "00181063": element("DS", 33.3333),
            "00180013": element("FL", 1.25, -0.5),
            "001811B7": element("FD", 3.141592653589793),
            "0018106E": element("UL", 70_000),
            "00186020": element("SL", -70_000),
        },
    ),
    "fixed answers": (
        identifier(
            "SERIES",
            RetrieveAETitle="",
            InstanceAvailability="",
            SeriesInstanceUID="",
            QueryRetrieveView="",
        ),
        {"0020000E": element("UI", "1.2.33"), "00080056": element("CS", "NEARLINE")},
    ),
    "identifier's character set": (
        study_keys(SpecificCharacterSet="ISO_IR 100"),
        STUDY,
    ),
    "identifier's character set, utf-8 answer": (
        study_keys(SpecificCharacterSet="ISO_IR 100"),
        {**STUDY, "00100010": element("PN", {"Alphabetic": "Ådne^Øyvind"})},
    ),
    "keys the match lacks and others it has": (
        identifier(PatientName="", IssuerOfPatientID="", StudyComments=""),
        {"00100010": element("PN", {"Alphabetic": "Doe"}), "00080060": element("CS", "MR")},
    ),
    "long values": (
        identifier(StudyDescription="", PatientComments="", StudyInstanceUID=""),
        {
            "00081030": element("LO", "x" * 10_001),
            "00104000": element("LT", "é" * 5_000),
            "0020000D": element("UI", *(f"1.2.{n}" for n in range(1_000))),
        },
    ),
    "text with backslashes and odd lengths": (
        identifier(PatientComments="", StudyDescription="", PatientAge=""),
        {
            "00104000": element("LT", "a\\b c"),
            "00081030": element("LO", "abc"),
            "00101010": element("AS", "045Y"),
        },
    ),
}


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_answers_are_the_bytes_pydicom_writes(case: str, implicit: bool) -> None:
    request, result = CASES[case]
    answer = ours(request, result, implicit)
    assert answer is not None, "the encoder should write this answer itself"
    assert answer == pydicom_bytes(request, result, implicit)


def test_a_wrong_vr_would_show_in_explicit_answers() -> None:
    """The comparison sees VRs: an explicit answer decodes with the catalog's VRs."""
    request, result = CASES["numbers"]
    decoded_answer = decoded(ours(request, result, False) or b"", SYNTAXES[False])
    assert decoded_answer["Rows"].VR == "US" and decoded_answer.Rows == 512
    assert decoded_answer["PixelSpacing"].VR == "DS"
    assert list(decoded_answer.PixelSpacing) == [0.1, 2]
    assert decoded_answer.InstanceNumber == -5


def test_non_ascii_names_say_utf_8_and_decode() -> None:
    request, result = CASES["utf-8 names"]
    for implicit in (True, False):
        answer = decoded(ours(request, result, implicit) or b"", SYNTAXES[implicit])
        assert answer.SpecificCharacterSet == "ISO_IR 192"
        name = answer.PatientName
        assert isinstance(name, PersonName)
        assert (name.alphabetic, name.ideographic, name.phonetic) == (
            "Yamada^Tarou",
            "山田^太郎",
            "やまだ^たろう",
        )
        assert answer.ReferringPhysicianName == "Müller^Jürgen"
        assert "RetrieveAETitle" not in answer  # not asked for


def test_ascii_answers_carry_no_character_set_unless_asked() -> None:
    request, result = CASES["ascii study"]
    answer = decoded(ours(request, result, True) or b"", SYNTAXES[True])
    assert "SpecificCharacterSet" not in answer
    assert answer.QueryRetrieveLevel == "STUDY"
    assert answer.ModalitiesInStudy == ["CT", "MR", "SR"]


UNENCODED: dict[str, tuple[Dataset, DicomJson]] = {
    "a sequence asked for": (
        identifier(ProcedureCodeSequence=[Item()], PatientName=""),
        {"00100010": element("PN", {"Alphabetic": "Doe"})},
    ),
    "a sequence in the match": (
        identifier(ReferencedStudySequence=None),
        {"00081110": {"vr": "SQ", "Value": [{"00081150": element("UI", "1.2")}]}},
    ),
    "inline binary": (
        identifier(PatientName=""),
        {"00100010": {"vr": "OB", "InlineBinary": "AAEC"}},
    ),
    "a code string that is not ascii": (
        identifier(PatientSex=""),
        {"00100040": element("CS", "é")},
    ),
    "a number that is text": (
        identifier(NumberOfStudyRelatedInstances=""),
        {"00201208": element("IS", "many")},
    ),
    "a value too long for its length field": (
        identifier(StudyDescription=""),
        {"00081030": element("LO", "x" * 70_000)},
    ),
    "a name that is not an object": (
        identifier(PatientName=""),
        {"00100010": element("PN", "Doe^John")},
    ),
    "a null value": (
        identifier(ModalitiesInStudy=""),
        {"00080061": element("CS", "CT", None)},
    ),
}


@pytest.mark.parametrize("case", UNENCODED, ids=list(UNENCODED))
def test_what_the_encoder_does_not_write_pydicom_does(case: str) -> None:
    """The answer falls back to the dataset, which pydicom encodes as before."""
    request, result = UNENCODED[case]
    plan = ResponsePlan(request, str(request.QueryRetrieveLevel), AE_TITLE)
    answer = plan.answer(result)
    assert answer.encoded(False) is None
    expected = response_identifier(request, str(request.QueryRetrieveLevel), result, AE_TITLE)
    assert answer.dataset() == expected


def test_the_plan_is_made_once_per_query() -> None:
    """Per-match work is the values only: the slots are the identifier's, in tag order."""
    request, _ = CASES["ascii study"]
    plan = ResponsePlan(request, "STUDY", AE_TITLE)
    tags = [slot.tag for slot in plan.slots]
    assert tags == sorted(tags)
    assert len(tags) == len(request) + 1  # and SpecificCharacterSet, for when it is needed


def test_a_malformed_catalog_element_is_left_to_pydicom() -> None:
    plan = ResponsePlan(identifier(PatientName=""), "STUDY", AE_TITLE)
    assert plan.answer({"00100010": "Doe^John"}).encoded(True) is None
