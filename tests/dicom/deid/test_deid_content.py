"""Clean Structured Content, Clean Graphics, Clean Descriptors and Retain Safe Private
on datasets made to carry the patient's identity where the corpus has none."""

from __future__ import annotations

import io
import secrets

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Pseudonymizer
from dicomflow.dicom.deid.profile import Action

SECRETS = ("John", "Doe", "12345", "2023-01-05", "Smith", "Mercy Hospital")


def _deidentify(dataset: Dataset, *options: str, safe: tuple[str, ...] = ()) -> Dataset:
    profile = DeidProfile.from_names(options=options, safe_private=safe)
    Deidentifier(profile, Pseudonymizer(secrets.token_bytes(32))).deidentify(dataset)
    return dataset


def _patient() -> Dataset:
    dataset = Dataset()
    dataset.PatientName, dataset.PatientID = "Doe^John", "12345"
    dataset.PatientBirthDate = "19700101"
    dataset.ReferringPhysicianName = "Smith^Alan"
    dataset.InstitutionName = "Mercy Hospital"
    dataset.StudyInstanceUID, dataset.SOPInstanceUID = "1.2.3.1", "1.2.3.2"
    return dataset


def _item(value_type: str, **values: object) -> Dataset:
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", value_type
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "1", "99X", "Note"
    item.ConceptNameCodeSequence = Sequence([concept])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _report() -> Dataset:
    dataset = _patient()
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "MH1", "99X"
    code.CodeMeaning = "Referred by Mercy Hospital"
    text = _item("TEXT", TextValue="John Doe (12345) seen 2023-01-05 by Smith: no findings")
    nested = _item("CONTAINER", ContentSequence=Sequence([text]))
    dataset.ContentSequence = Sequence(
        [
            nested,
            _item("PNAME", PersonName="Smith^Alan"),
            _item("DATETIME", DateTime="20230105101500"),
            _item("UIDREF", UID="1.2.3.2"),
            _item("CODE", ConceptCodeSequence=Sequence([code])),
        ]
    )
    return dataset


def _text(dataset: Dataset) -> str:
    return " ".join(str(e.value) for e in dataset.iterall() if e.VR not in ("SQ", "UI"))


def test_structured_content_is_replaced_under_the_basic_profile() -> None:
    report = _deidentify(_report())
    items = report.ContentSequence
    assert not any(word.lower() in _text(report).lower() for word in SECRETS)
    assert items[0].ContentSequence[0].TextValue.strip()  # a dummy, not removed
    assert items[2].DateTime == "19000101000000"
    reference = items[3].UID  # the UIDREF names the instance itself: its pseudonym
    assert reference == report.SOPInstanceUID and reference != "1.2.3.2"
    assert items[4].ConceptCodeSequence[0].CodeMeaning != "Referred by Mercy Hospital"
    assert items[0].ValueType == "CONTAINER" and items[0].RelationshipType == "CONTAINS"


def test_clean_structured_content_keeps_the_text_without_the_identity() -> None:
    report = _report()
    original = _report()
    _deidentify(report, "clean_structured_content", "retain_longitudinal_modified_dates")
    items = report.ContentSequence
    text = items[0].ContentSequence[0].TextValue
    assert "seen" in text and "no findings" in text
    assert not any(word.lower() in text.lower() for word in SECRETS)
    assert items[1].PersonName != original.ContentSequence[1].PersonName  # its row: D
    shifted = items[2].DateTime
    assert shifted != "20230105101500" and shifted.endswith("101500") and len(shifted) == 14
    reference = items[3].UID
    assert reference == report.SOPInstanceUID
    assert items[4].ConceptCodeSequence[0].CodeMeaning == "Referred by"
    assert items[0].ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "Note"


def _presentation() -> Dataset:
    dataset = _patient()
    text = Dataset()
    text.UnformattedTextValue = "Doe^John 12345 L"
    text.BoundingBoxAnnotationUnits = "PIXEL"
    annotation = Dataset()
    annotation.GraphicLayer = "LAYER1"
    annotation.TextObjectSequence = Sequence([text])
    dataset.GraphicAnnotationSequence = Sequence([annotation])
    dataset.add_new(0x60000010, "US", 2)
    dataset.add_new(0x60000011, "US", 2)
    dataset.add_new(0x60000022, "LO", "Doe John outline")
    dataset.add_new(0x60003000, "OW", b"\x0f\x00")
    dataset.add_new(0x50000005, "US", 1)
    return dataset


def test_graphics_are_replaced_and_overlays_removed_under_the_basic_profile() -> None:
    result = _deidentify(_presentation())
    text = result.GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert "Doe" not in text.UnformattedTextValue and text.UnformattedTextValue
    assert text.BoundingBoxAnnotationUnits == "PIXEL"
    assert not [e for e in result if e.tag.group in (0x6000, 0x5000)]


def test_clean_graphics_keeps_overlays_and_annotations_without_the_identity() -> None:
    result = _deidentify(_presentation(), "clean_graphics")
    text = result.GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert text.UnformattedTextValue == "L"
    assert result[0x60003000].value == b"\x0f\x00" and result[0x60000010].value == 2
    assert result[0x60000022].value == "outline"
    assert 0x50000005 not in result  # curves are retired: removed whatever the option


def test_clean_descriptors_removes_names_numbers_places_and_dates() -> None:
    dataset = _patient()
    dataset.StudyDescription = "CT head Doe 12345 2023-01-05 Mercy Hospital for Dr Smith"
    dataset.SeriesDescription = "Axial 5mm General 3.5"
    dataset.ImageComments = "05.01.2023: John"
    result = _deidentify(dataset, "clean_descriptors")
    assert result.StudyDescription == "CT head for Dr"
    assert result.SeriesDescription == "Axial 5mm General 3.5"
    assert result.ImageComments == ":"
    basic = _deidentify(_patient(), "retain_safe_private")
    assert "StudyDescription" not in basic


def _with_private() -> Dataset:
    dataset = _patient()
    block = dataset.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "DS", "1000")
    block.add_new(0x0D, "LO", "Doe John")
    other = dataset.private_block(0x0029, "ACME 1.0", create=True)
    other.add_new(0x10, "LO", "12345")
    item = Dataset()
    item.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "DS", "7")
    item.private_block(0x0019, "SIEMENS MR HEADER").add_new(0x0D, "LO", "John")
    dataset.ReferencedImageSequence = Sequence([item])
    return dataset


def test_safe_private_attributes_and_their_creators_are_the_only_ones_kept() -> None:
    safe = ("SIEMENS MR HEADER,0019,0C",)
    result = _deidentify(_with_private(), "retain_safe_private", safe=safe)
    private = {int(e.tag): e.value for e in result if e.tag.is_private}
    assert private == {0x00190010: "SIEMENS MR HEADER", 0x0019100C: "1000"}
    nested = result.ReferencedImageSequence[0]
    assert {int(e.tag) for e in nested if e.tag.is_private} == {0x00190010, 0x0019100C}
    plain = _deidentify(_with_private())
    assert not [e for e in plain.iterall() if e.tag.is_private]


@pytest.mark.parametrize(
    "keyword,basic,resolved",
    [
        ("AcquisitionDate", "X/Z", Action.ZERO),
        ("SeriesDate", "X/D", Action.DUMMY),
        ("ContentDate", "Z/D", Action.DUMMY),
        ("InstitutionName", "X/Z/D", Action.DUMMY),
        ("ReferencedImageSequence", "X/Z/U*", Action.UID),
    ],
)
def test_composite_actions_resolve_as_documented(
    keyword: str, basic: str, resolved: Action
) -> None:
    from pydicom.datadict import tag_for_keyword

    from dicomflow.dicom.deid.profile import table

    tag = tag_for_keyword(keyword)
    assert tag is not None
    [entry] = [e for e in table() if e.tag == f"{tag:08x}"]
    assert entry.basic == basic
    assert DeidProfile().actions()[tag] is resolved


def test_an_option_keep_wins_over_another_option_clean() -> None:
    both = DeidProfile.from_names(options=["retain_device_identity", "clean_descriptors"])
    assert both.actions()[0x00081010] is Action.KEEP  # StationName
    binary = DeidProfile.from_names(options=["clean_descriptors"]).actions()
    assert binary[0x0016002B] is Action.REMOVE  # MakerNote: C on bytes falls back to X


def test_the_new_file_meta_names_no_sender_receiver_or_private_information() -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    dataset = dcmread(get_testdata_file("CT_small.dcm"))
    dataset.file_meta.SourceApplicationEntityTitle = "MERCY_CT1"
    dataset.file_meta.SendingApplicationEntityTitle = "MERCY_PACS"
    dataset.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    dataset.file_meta.PrivateInformation = b"Doe John"
    transfer_syntax = dataset.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    deidentifier = Deidentifier(DeidProfile(), Pseudonymizer(secrets.token_bytes(32)))
    data, identity = deidentifier.deidentify_bytes(buffer.getvalue())
    assert b"MERCY" not in data and b"Doe John" not in data
    meta = dcmread(io.BytesIO(data)).file_meta
    assert meta.MediaStorageSOPInstanceUID == identity.sop_instance_uid
    assert meta.TransferSyntaxUID == transfer_syntax
    assert meta.MediaStorageSOPClassUID == dataset.SOPClassUID
