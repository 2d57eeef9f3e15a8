"""The node's local workers log into one weekly-rotated file each."""

from pathlib import Path

from sample_pipelines import CopyPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import storescu, wait_for


def test_each_local_worker_logs_into_its_own_file(make_node, tmp_path: Path):
    node = make_node(CopyPipeline)
    storescu(node.port, write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct"))
    wait_for(lambda: node.counters.rounds_succeeded == 1, 30, "the round")
    logs = tmp_path / "data" / "logs"
    own = logs / "workers-0.log"
    wait_for(lambda: own.exists() and "finished" in own.read_text(), 10, "the worker's log")
    assert "started on" in own.read_text()
    stray = logs / "workers.log"  # only what bypasses logging: nothing here
    assert not stray.exists() or "finished" not in stray.read_text()
