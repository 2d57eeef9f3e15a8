"""Hostile input: a clean result or a DeidError naming the problem, never another
exception, and never an original value left in an X, Z, D or U attribute."""

from __future__ import annotations

import copy
import io
import secrets
from collections.abc import Callable

import pytest
from deid_support import Conformance
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Pseudonymizer
from dicomflow.errors import DeidError

HOSTILE_TEXT = ["", "../x", "/etc", "a\0b", "x" * 10_240, "*?%\\_", " \t"]
OPTIONS = [(), ("retain_longitudinal_modified_dates", "clean_descriptors")]


@pytest.fixture(scope="module")
def ct() -> Dataset:
    return dcmread(get_testdata_file("CT_small.dcm"))


def _deidentifier(options: tuple[str, ...]) -> Deidentifier:
    return Deidentifier(
        DeidProfile.from_names(options=options), Pseudonymizer(secrets.token_bytes(32))
    )


def _check(dataset: Dataset, options: tuple[str, ...]) -> Conformance:
    """De-identify (a copy of) ``dataset``; only DeidError may escape; every row is checked."""
    deidentifier = _deidentifier(options)
    conformance = Conformance(deidentifier.profile, deidentifier.pseudonymizer)
    conformance.check("hostile", dataset, deidentifier)
    assert not conformance.failures, "\n".join(conformance.failures[:20])
    return conformance


def _with(ct: Dataset, change: Callable[[Dataset], None]) -> Dataset:
    dataset = copy.deepcopy(ct)
    change(dataset)
    return dataset


@pytest.mark.parametrize("options", OPTIONS, ids=["basic", "dates+descriptors"])
@pytest.mark.parametrize(
    "text", HOSTILE_TEXT, ids=["empty", "dotdot", "etc", "nul", "10k", "wild", "blank"]
)
def test_hostile_identifiers(ct: Dataset, text: str, options: tuple[str, ...]) -> None:
    def change(dataset: Dataset) -> None:
        dataset.PatientID = text
        dataset.PatientName = text
        dataset.AccessionNumber = text[:16]
        dataset.StudyDescription = f"CT for {text} head"
        dataset.OtherPatientIDs = text
        dataset.InstitutionName = text

    dataset = _with(ct, change)
    _check(dataset, options)


@pytest.mark.parametrize("options", OPTIONS, ids=["basic", "dates+descriptors"])
@pytest.mark.parametrize("date", ["2023", "20231340", "abc", "", "2023-01-05", "99999999"])
def test_invalid_dates(ct: Dataset, date: str, options: tuple[str, ...]) -> None:
    def change(dataset: Dataset) -> None:
        dataset.StudyDate = dataset.SeriesDate = dataset.ContentDate = date
        dataset.PatientBirthDate = date
        dataset.AcquisitionDateTime = date + "1200"

    _check(_with(ct, change), options)


def test_multi_valued_uids_are_each_replaced(ct: Dataset) -> None:
    def change(dataset: Dataset) -> None:
        dataset.FrameOfReferenceUID = ["1.2.3.4", "1.2.3.5"]
        item = Dataset()
        item.ReferencedSOPInstanceUID = ["1.2.3.6", "1.2.3.7"]
        dataset.ReferencedImageSequence = Sequence([item])

    conformance = _check(_with(ct, change), ())
    assert {"1.2.3.4", "1.2.3.5", "1.2.3.6", "1.2.3.7"} <= conformance.uid_map.keys()


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
def test_a_multi_valued_instance_uid_is_refused_by_name(ct: Dataset, keyword: str) -> None:
    dataset = _with(ct, lambda d: setattr(d, keyword, ["1.2.3", "1.2.4"]))
    with pytest.raises(DeidError, match=keyword):
        _deidentifier(()).deidentify(dataset)


def _nested(depth: int) -> Dataset:
    top = Dataset()
    current = top
    for level in range(depth):
        item = Dataset()
        item.ReferencedSOPInstanceUID = f"1.2.9.{level}"
        item.PatientName = f"Nested^{level}"
        item.TextValue = "Doe"
        current.ContentSequence = Sequence([item])
        current = item
    return top


def test_empty_and_deeply_nested_sequences(ct: Dataset) -> None:
    def change(dataset: Dataset) -> None:
        dataset.ReferencedStudySequence = Sequence([])
        dataset.OtherPatientIDsSequence = Sequence([Dataset()])
        dataset.ContentSequence = _nested(60).ContentSequence

    _check(_with(ct, change), ())
    _check(_with(ct, change), ("clean_structured_content",))


def test_sequences_nested_beyond_reason_are_a_deid_error(ct: Dataset) -> None:
    dataset = _with(ct, lambda d: setattr(d, "ContentSequence", _nested(150).ContentSequence))
    with pytest.raises(DeidError, match="nested"):
        _deidentifier(()).deidentify(dataset)


def test_a_dataset_without_patient_or_uids(ct: Dataset) -> None:
    dataset = Dataset()
    dataset.Modality = "OT"
    dataset.StudyDescription = "nothing else"
    result = copy.deepcopy(dataset)
    identity = _deidentifier(()).deidentify(result)
    assert identity.study_uid == identity.series_uid == identity.sop_instance_uid == ""
    assert result.PatientIdentityRemoved == "YES" and "StudyDescription" not in result
    _check(dataset, ())


@pytest.mark.parametrize(
    "data", [b"", b"DICM", b"\0" * 200, b"\0" * 128 + b"DICM" + b"\xff" * 40], ids=str
)
def test_unreadable_bytes_are_a_deid_error(data: bytes) -> None:
    with pytest.raises(DeidError):
        _deidentifier(()).deidentify_bytes(data)


def test_truncated_file_is_a_deid_error_or_clean(ct: Dataset) -> None:
    buffer = io.BytesIO()
    ct.save_as(buffer, enforce_file_format=True)
    whole = buffer.getvalue()
    for cut in (200, 400, 800, len(whole) - 100):
        try:
            data, _ = _deidentifier(()).deidentify_bytes(whole[:cut])
        except DeidError:
            continue
        assert str(ct.PatientName).encode() not in data and ct.SOPInstanceUID.encode() not in data
