"""A round's job cannot write, move or delete the node's files: only its own ``work/``
and ``output/`` folders in the data directory (Landlock)."""

import logging
from pathlib import Path

import pytest
from sample_pipelines import MARK, VandalPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.queue import landlock
from support import StoreSCPPeer, storescu, wait_for

ATTEMPTS = ["journal", "spool", "queue", "failed round", "own inputs", "data directory"]


def relayed(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dicomflow.process"]


def test_a_job_cannot_damage_the_journal_spool_queue_or_other_rounds(
    make_node, storescp: StoreSCPPeer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dicomflow.process")
    data = tmp_path / "data"
    node = make_node(VandalPipeline, endpoints=[storescp.endpoint()])
    first = make_ct_series(2, rows=8, columns=8, patient_id="FIRST")
    storescu(node.port, write_series(first, tmp_path / "first"))
    wait_for(lambda: node.counters.rounds_failed == 1, 30, "the first round to fail")
    [failed] = (data / "failed").iterdir()
    kept = sorted(path.name for path in failed.rglob("*"))

    second = make_ct_series(2, rows=8, columns=8, patient_id="SECOND")
    storescu(node.port, write_series(second, tmp_path / "second"))
    wait_for(lambda: len(storescp.files()) == 2, 30, "the second round's results")

    lines = relayed(caplog)
    assert [line for line in lines if "DAMAGED" in line] == []
    for what in ATTEMPTS:
        assert any(line.endswith(f"refused: {what}") for line in lines), what
    assert (data / "journal" / "segment.journal").stat().st_size > 0
    assert not (data / "spool" / "incoming" / "planted.dcm").exists()
    assert (data / "queue.db").stat().st_size > 0
    assert sorted(path.name for path in failed.rglob("*")) == kept
    assert node.counters.rounds_succeeded == 1
    assert all(MARK in path.read_bytes().decode("latin-1") for path in storescp.files())


def test_without_landlock_the_job_runs_unprotected_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    def no_landlock(kernel: object) -> int:
        raise landlock.LandlockUnavailable("this kernel has no Landlock")

    monkeypatch.setattr(landlock._Kernel, "abi", no_landlock)
    with caplog.at_level(logging.WARNING, logger="dicomflow.queue.landlock"):
        assert landlock.protect([tmp_path]) is False

    assert "not write-protected: this kernel has no Landlock" in caplog.text
    (tmp_path / "still writable").write_text("yes")
