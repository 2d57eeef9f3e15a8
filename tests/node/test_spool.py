"""The durable spool: exact bytes, paths only from keys and UIDs, leftovers cleared."""

import os
from pathlib import Path

import pytest

from dicomflow.dicom.keys import InvalidKeyError, value_key
from dicomflow.engine.spool import Spool
from dicomflow.errors import SpoolError

PATIENT = value_key("PAT-1")


@pytest.mark.parametrize("fsync", [True, False])
def test_store_writes_exact_bytes_inside_the_spool(tmp_path: Path, fsync: bool):
    spool = Spool(tmp_path / "spool", fsync=fsync)
    data = os.urandom(70_000) + b"\x00" * 10
    path = spool.store(PATIENT, "1.2.840.10008.1", data)
    assert path == tmp_path / "spool" / "incoming" / PATIENT / "1.2.840.10008.1.dcm"
    assert path.read_bytes() == data
    assert path.resolve().is_relative_to((tmp_path / "spool" / "incoming").resolve())
    assert not list(spool.tmp.iterdir()), "no temporary file left behind"
    assert list(spool.instances()) == [(PATIENT, path)]


def test_storing_the_same_instance_again_replaces_it(tmp_path: Path):
    spool = Spool(tmp_path / "spool", fsync=False)
    spool.store(PATIENT, "1.2.3", b"first")
    path = spool.store(PATIENT, "1.2.3", b"second")
    assert path.read_bytes() == b"second"
    assert len(list(spool.instances())) == 1


@pytest.mark.parametrize("uid", ["../../x", "", "1..2", "1.2/../../3", "1.2\x00"])
def test_a_hostile_uid_is_refused_and_nothing_is_written(tmp_path: Path, uid: str):
    spool = Spool(tmp_path / "spool", fsync=False)
    with pytest.raises(InvalidKeyError):
        spool.store(PATIENT, uid, b"data")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


@pytest.mark.parametrize("patient_key", ["../x", "PAT-1", "", PATIENT.upper()])
def test_only_a_hashed_patient_key_names_a_directory(tmp_path: Path, patient_key: str):
    spool = Spool(tmp_path / "spool", fsync=False)
    with pytest.raises(SpoolError, match="is not a patient key"):
        spool.store(patient_key, "1.2.3", b"data")


def test_leftover_temporary_files_are_cleared_at_start(tmp_path: Path):
    tmp = tmp_path / "spool" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "0123abcd.part").write_bytes(b"half an instance")
    kept = Spool(tmp_path / "spool", fsync=False)
    assert not list(tmp.glob("*.part"))
    assert list(kept.instances()) == []


def test_instances_survive_a_new_spool_object(tmp_path: Path):
    first = Spool(tmp_path / "spool", fsync=False)
    stored = {first.store(value_key(f"P{n}"), f"1.2.{n}", b"x") for n in range(3)}
    (first.incoming / "not-a-key").mkdir()
    (first.incoming / "not-a-key" / "1.2.9.dcm").write_bytes(b"stray")
    again = Spool(tmp_path / "spool", fsync=False)
    assert {path for _, path in again.instances()} == stored


def test_forget_empty_removes_only_an_empty_patient_directory(tmp_path: Path):
    spool = Spool(tmp_path / "spool", fsync=False)
    path = spool.store(PATIENT, "1.2.3", b"x")
    spool.forget_empty(PATIENT)
    assert path.exists()
    path.unlink()
    spool.forget_empty(PATIENT)
    assert not path.parent.exists()
    assert spool.store(PATIENT, "1.2.4", b"y").read_bytes() == b"y"
