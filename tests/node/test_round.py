"""Rounds: created by moving instances out of the spool, recovered, or failed with a record."""

import json
import os
from pathlib import Path

import pytest

from dicomflow.dicom.keys import value_key
from dicomflow.engine.round_store import MANIFEST, PARTIAL, Round, RoundStore
from dicomflow.engine.spool import Spool

PATIENT = value_key("PAT-7")
CT_UIDS = ["1.2.3.1", "1.2.3.2", "1.2.3.3"]
MR_UIDS = ["1.2.4.1"]


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "data" / "spool", fsync=False)


@pytest.fixture
def store(tmp_path: Path, spool: Spool) -> RoundStore:
    return RoundStore(tmp_path / "data", spool)


def fill(spool: Spool) -> dict[str, dict[str, Path]]:
    """Store instances of two inputs; return the collector's members for them."""
    members: dict[str, dict[str, Path]] = {"ct": {}, "mr": {}}
    for name, uids in (("ct", CT_UIDS), ("mr", MR_UIDS)):
        for uid in uids:
            members[name][uid] = spool.store(PATIENT, uid, f"bytes of {uid}".encode())
    return members


def test_create_moves_the_instances_and_writes_a_manifest(spool: Spool, store: RoundStore):
    members = fill(spool)
    job = store.create("pipe.Pipeline", PATIENT, members)
    assert job.directory == store.rounds / job.round_id
    for uid in CT_UIDS + MR_UIDS:
        assert (job.instances_dir / f"{uid}.dcm").read_bytes() == f"bytes of {uid}".encode()
    assert list(spool.instances()) == []
    assert not (spool.incoming / PATIENT).exists()
    manifest = json.loads((job.directory / MANIFEST).read_text())
    assert manifest["inputs"] == {"ct": CT_UIDS, "mr": MR_UIDS}
    assert manifest["patient_key"] == PATIENT
    assert manifest["pipeline"] == "pipe.Pipeline"
    assert [pending.round_id for pending in store.pending()] == [job.round_id]
    assert store.pending()[0].input_paths()["mr"] == [
        (MR_UIDS[0], job.instances_dir / f"{MR_UIDS[0]}.dcm")
    ]


def test_an_instance_that_vanished_is_left_out_of_the_manifest(spool: Spool, store: RoundStore):
    members = fill(spool)
    members["ct"]["1.2.3.2"].unlink()
    job = store.create("pipe.Pipeline", PATIENT, members)
    assert job.inputs == {"ct": ["1.2.3.1", "1.2.3.3"], "mr": MR_UIDS}
    assert store.load(job.directory).inputs == job.inputs


def test_the_same_instances_later_make_a_new_round(spool: Spool, store: RoundStore):
    first = store.create("pipe.Pipeline", PATIENT, fill(spool))
    second = store.create("pipe.Pipeline", PATIENT, fill(spool))
    assert first.round_id != second.round_id


def test_recover_partial_puts_the_instances_back_into_the_spool(spool: Spool, store: RoundStore):
    job = store.create("pipe.Pipeline", PATIENT, fill(spool))
    os.replace(job.directory, store.rounds / f"{job.round_id}{PARTIAL}")  # crash before rename
    assert store.recover_partial() == len(CT_UIDS + MR_UIDS)
    restored = {path.name: path.read_bytes() for key, path in spool.instances() if key == PATIENT}
    assert restored == {f"{uid}.dcm": f"bytes of {uid}".encode() for uid in CT_UIDS + MR_UIDS}
    assert list(store.rounds.iterdir()) == []
    assert store.pending() == []


def test_recover_partial_with_half_the_instances_moved(spool: Spool, store: RoundStore):
    members = fill(spool)
    job = store.create("pipe.Pipeline", PATIENT, {"ct": members["ct"]})
    os.replace(job.directory, store.rounds / f"{job.round_id}{PARTIAL}")
    assert store.recover_partial() == len(CT_UIDS)
    assert sorted(path.name for _, path in spool.instances()) == sorted(
        f"{uid}.dcm" for uid in CT_UIDS + MR_UIDS
    )


def test_fail_moves_the_round_to_failed_with_the_error(spool: Spool, store: RoundStore):
    job = store.create("pipe.Pipeline", PATIENT, fill(spool))
    round_dir = job.directory
    for folder in (job.work_dir, job.output_dir):
        folder.mkdir()
        (folder / "partial-result.dcm").write_bytes(b"x")
    job.log_file.write_text("process() said something\n")
    target = store.fail(job, "process() raised ValueError")
    assert target == store.failed / job.round_id
    assert job.directory == target
    assert not round_dir.exists()
    record = json.loads((target / "error.json").read_text())
    assert record["round_id"] == job.round_id
    assert record["error"] == "process() raised ValueError"
    assert sorted(p.name for p in job.instances_dir.iterdir()) == sorted(
        f"{uid}.dcm" for uid in CT_UIDS + MR_UIDS
    ), "the inputs are kept"
    assert job.log_file.read_text() == "process() said something\n"
    assert not job.work_dir.exists()
    assert not job.output_dir.exists()
    assert store.pending() == []


def test_finish_removes_the_round(spool: Spool, store: RoundStore):
    job = store.create("pipe.Pipeline", PATIENT, fill(spool))
    store.finish(job)
    assert not job.directory.exists()
    assert store.pending() == []


def test_an_unreadable_manifest_leaves_the_round_in_place(store: RoundStore):
    broken = store.rounds / "feedface"
    broken.mkdir()
    (broken / MANIFEST).write_text("{not json")
    assert store.pending() == []
    assert broken.exists()


def test_round_json_round_trips(tmp_path: Path):
    job = Round("abc", "pipe.P", PATIENT, {"ct": ["1.2"]}, tmp_path / "abc")
    data = job.to_json()
    assert data["directory"] == str(tmp_path / "abc")
    assert Round(**{**data, "directory": Path(data["directory"])}) == job
