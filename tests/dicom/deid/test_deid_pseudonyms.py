"""Pseudonyms: stable across runs and processes with one key, unrelated with another;
valid UIDs and patient IDs; a per-patient date shift; the key file and the
re-identification table readable by their owner only."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file

from dicomflow.dicom.deid import (
    Deidentifier,
    DeidProfile,
    Pseudonymizer,
    ReidentificationTable,
    create_key_file,
    load_key_file,
)
from dicomflow.dicom.deid.pseudonyms import MAX_OFFSET_DAYS, MIN_OFFSET_DAYS
from dicomflow.dicom.deid.reidentification import IdentityKind
from dicomflow.errors import DeidConfigError

UID = re.compile(r"2\.25\.(0|[1-9][0-9]*)")
ORIGINALS = ["1.2.840.113619.2.1.1.322987881.621.736170080.681", "1.2.3", "9" * 64, ""]

CHILD = """
import json, sys
from pathlib import Path
from dicomflow.dicom.deid import Deidentifier, DeidProfile, Pseudonymizer, load_key_file
pseudonymizer = Pseudonymizer(load_key_file(Path(sys.argv[1])))
data = Path(sys.argv[2]).read_bytes()
_, identity = Deidentifier(DeidProfile(), pseudonymizer).deidentify_bytes(data)
print(json.dumps({
    "uids": [pseudonymizer.uid(u) for u in json.loads(sys.argv[3])],
    "patient": pseudonymizer.patient_id("PAT-1", "ISSUER"),
    "offset": pseudonymizer.date_offset_days("X"),
    "identity": [identity.patient_id, identity.study_uid, identity.series_uid,
                 identity.sop_instance_uid],
}))
"""


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return create_key_file(tmp_path / "deid" / "key")


def test_the_same_key_gives_the_same_pseudonyms_in_another_process(key_file: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")
    pseudonymizer = Pseudonymizer(load_key_file(key_file))
    _, identity = Deidentifier(DeidProfile(), pseudonymizer).deidentify_bytes(Path(ct).read_bytes())
    args = [sys.executable, "-c", CHILD, str(key_file), ct, json.dumps(ORIGINALS)]
    child = json.loads(subprocess.run(args, capture_output=True, check=True, text=True).stdout)
    assert child["uids"] == [pseudonymizer.uid(u) for u in ORIGINALS]
    assert child["patient"] == pseudonymizer.patient_id("PAT-1", "ISSUER")
    assert child["offset"] == pseudonymizer.date_offset_days("X")
    assert child["identity"] == [
        identity.patient_id,
        identity.study_uid,
        identity.series_uid,
        identity.sop_instance_uid,
    ]


def test_another_key_gives_other_pseudonyms(key_file: Path, tmp_path: Path) -> None:
    one = Pseudonymizer(load_key_file(key_file))
    other = Pseudonymizer(load_key_file(create_key_file(tmp_path / "other")))
    for original in ORIGINALS[:3]:
        assert one.uid(original) != other.uid(original)
    assert one.patient_id("PAT-1") != other.patient_id("PAT-1")
    assert one.token("x", "Doe") != other.token("x", "Doe")


def test_uids_are_valid_and_patient_ids_are_valid_lo(key_file: Path) -> None:
    pseudonymizer = Pseudonymizer(load_key_file(key_file))
    uids = {pseudonymizer.uid(f"1.2.826.0.1.{n}") for n in range(5000)}
    assert len(uids) == 5000
    for uid in uids:
        assert len(uid) <= 64 and UID.fullmatch(uid), uid
        assert all(part == "0" or not part.startswith("0") for part in uid.split("."))
    assert pseudonymizer.uid(" 1.2.3\0") == pseudonymizer.uid("1.2.3")
    for original in ("PAT-1", "", "x" * 10_000, "a\0b", "Müller"):
        patient = pseudonymizer.patient_id(original)
        assert re.fullmatch(r"[A-Z2-7]{16}", patient)
    assert pseudonymizer.patient_id("1", "A") != pseudonymizer.patient_id("1", "B")


def _study(patient: str, study: str, date: str) -> Dataset:
    dataset = Dataset()
    dataset.PatientID, dataset.PatientName = patient, "Doe^John"
    dataset.StudyInstanceUID, dataset.StudyDate, dataset.SeriesDate = study, date, date
    dataset.AcquisitionDateTime = f"{date}101500.25+0100"
    return dataset


def test_dates_shift_by_one_offset_per_patient(key_file: Path) -> None:
    pseudonymizer = Pseudonymizer(load_key_file(key_file))
    profile = DeidProfile.from_names(options=["retain_longitudinal_modified_dates"])
    deidentifier = Deidentifier(profile, pseudonymizer)
    studies = [_study("P1", "1.2.1", "20200131"), _study("P1", "1.2.2", "20240229")]
    offsets = set()
    for dataset in studies:
        before = dt.datetime.strptime(dataset.StudyDate, "%Y%m%d")
        identity = deidentifier.deidentify(dataset)
        offsets.add((dt.datetime.strptime(dataset.StudyDate, "%Y%m%d") - before).days)
        assert dataset.SeriesDate == dataset.StudyDate
        assert dataset.AcquisitionDateTime == f"{dataset.StudyDate}101500.25+0100"
        assert offsets == {pseudonymizer.date_offset_days(identity.patient_id)}
    assert -MAX_OFFSET_DAYS <= offsets.pop() <= -MIN_OFFSET_DAYS
    days = {pseudonymizer.date_offset_days(pseudonymizer.patient_id(f"P{n}")) for n in range(500)}
    assert min(days) >= -MAX_OFFSET_DAYS and max(days) <= -MIN_OFFSET_DAYS and len(days) > 300


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused(key_file: Path, mode: int) -> None:
    key_file.chmod(mode)
    with pytest.raises(DeidConfigError, match=r"deid_key_file: .* readable by others .*0600"):
        load_key_file(key_file)


@pytest.mark.parametrize("text", ["", "abcd", "00" * 31, "zz" * 32, "\u00e9" * 64])
def test_a_short_or_garbled_key_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "key"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(DeidConfigError, match="deid_key_file"):
        load_key_file(path)
    with pytest.raises(DeidConfigError, match="deid_key_file"):
        Pseudonymizer(b"short")


def test_a_key_file_is_made_0600_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "made" / "key"
    assert len(load_key_file(path, create=True)) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(DeidConfigError, match=r"deid_key_file: .* exists already"):
        create_key_file(path)
    with pytest.raises(DeidConfigError, match="deid_key_file: cannot read"):
        load_key_file(tmp_path / "missing")


def test_the_key_appears_in_no_repr_log_output_or_dataset(
    key_file: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    key = load_key_file(key_file)
    pseudonymizer = Pseudonymizer(key)
    deidentifier = Deidentifier(DeidProfile(), pseudonymizer)
    caplog.set_level(logging.DEBUG)
    data, _ = deidentifier.deidentify_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    captured = capsys.readouterr()
    texts = [repr(pseudonymizer), repr(deidentifier), caplog.text, captured.out, captured.err]
    for secret in (key.hex(), key.hex().upper()):
        assert not any(secret in text for text in texts)
        assert secret.encode() not in data and key not in data


def test_reidentification_table_is_private_and_looks_pseudonyms_up(
    key_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "reid" / "table.sqlite"
    table = ReidentificationTable(path)
    deidentifier = Deidentifier(DeidProfile(), Pseudonymizer(load_key_file(key_file)), table)
    original = dcmread(get_testdata_file("CT_small.dcm"))
    identity = deidentifier.deidentify(dcmread(get_testdata_file("CT_small.dcm")))
    deidentifier.deidentify(dcmread(get_testdata_file("CT_small.dcm")))  # recorded once
    expected = {
        identity.patient_id: (IdentityKind.PATIENT, original.PatientID),
        identity.study_uid: (IdentityKind.STUDY, original.StudyInstanceUID),
        identity.series_uid: (IdentityKind.SERIES, original.SeriesInstanceUID),
        identity.sop_instance_uid: (IdentityKind.INSTANCE, original.SOPInstanceUID),
    }
    for pseudonym, (kind, value) in expected.items():
        [found] = table.lookup(f" {pseudonym} ")
        assert (found.kind, found.original) == (kind, value)
    assert table.lookup("2.25.1") == []
    table.close()
    for file in path.parent.iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file
    reopened = ReidentificationTable(path)
    assert reopened.lookup(identity.patient_id)[0].original == original.PatientID
    reopened.close()
    path.chmod(0o644)
    with pytest.raises(
        DeidConfigError, match=r"deid_reidentification_table: .* readable by others"
    ):
        ReidentificationTable(path)


def test_reidentification_table_in_an_unwritable_place_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DeidConfigError, match="deid_reidentification_table"):
        ReidentificationTable(blocker / "table.sqlite")
    assert not os.path.exists(blocker / "table.sqlite")


def test_a_key_path_that_cannot_be_a_file_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    for path in (blocker / "key", tmp_path):
        with pytest.raises(DeidConfigError, match="deid_key_file"):
            load_key_file(path, create=True)
