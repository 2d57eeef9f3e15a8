"""Processing failures: a failed round keeps its inputs and its cause; the node carries on."""

import json
import logging
import os
import subprocess
from pathlib import Path

import pydicom
import pytest
from sample_pipelines import (
    MARK,
    ChattyPipeline,
    ExitingPipeline,
    PidSleepingPipeline,
    RaisingPipeline,
    SegfaultPipeline,
    SleepingPipeline,
    WorkdirPipeline,
)

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, storescu, wait_for

CHATTY_LINE = "x" * 1023


def echoscu(port: int) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-aet", "ECHOSCU", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def send_series(port: int, folder: Path, count: int = 3) -> list[pydicom.Dataset]:
    series = make_ct_series(count, rows=16, columns=16, patient_id=folder.name)
    storescu(port, write_series(series, folder))
    return series


def failed_rounds(data: Path) -> list[Path]:
    return sorted((data / "failed").iterdir())


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.mark.parametrize(
    ("pipeline", "causes"),
    [
        pytest.param(
            RaisingPipeline,
            ["Traceback", "in process", "ValueError: segmentation model exploded"],
            id="exception",
        ),
        pytest.param(ExitingPipeline, ["code 3"], id="os._exit"),
        pytest.param(SegfaultPipeline, ["SIGSEGV"], id="segfault"),
        pytest.param(SleepingPipeline, ["timed out"], id="timeout"),
    ],
)
def test_a_failed_round_keeps_its_inputs_and_cause_and_the_node_keeps_serving(
    make_node, storescp: StoreSCPPeer, tmp_path: Path, pipeline: type, causes: list[str]
):
    data = tmp_path / "data"
    node = make_node(pipeline, endpoints=[storescp.endpoint()])
    sent = send_series(node.port, tmp_path / "first")
    wait_for(lambda: node.counters.rounds_failed == 1, what="the round to fail")

    assert node.counters.rounds_succeeded == 0
    assert node.counters.delivered == 0
    assert storescp.files() == []
    assert list((data / "outbox").iterdir()) == []
    [failed] = failed_rounds(data)
    kept = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, failed.glob("instances/*"))}
    assert kept.keys() == {str(ds.SOPInstanceUID) for ds in sent}
    for original in sent:
        copy = kept[str(original.SOPInstanceUID)]
        assert copy.PixelData == original.PixelData
        assert copy.PatientID == original.PatientID
    record = json.loads((failed / "error.json").read_text())
    assert record["round_id"] == failed.name
    for cause in causes:
        assert cause in record["error"]
    assert (failed / "process.log").is_file()

    storescu(node.port, write_series(make_ct_series(2, rows=16, columns=16), tmp_path / "second"))
    assert echoscu(node.port).returncode == 0
    wait_for(lambda: node.counters.rounds_failed == 2, what="the second round to fail too")
    assert node.counters.received == 5
    assert storescp.files() == []


def test_a_timed_out_round_is_killed_with_the_processes_it_started(make_node, tmp_path: Path):
    data = tmp_path / "data"
    node = make_node(PidSleepingPipeline)
    send_series(node.port, tmp_path / "sleepy", count=1)
    wait_for(lambda: node.counters.rounds_failed == 1, timeout_s=30, what="the timeout")

    worker, child = map(int, (tmp_path / "records" / "sleeper.pids").read_text().split())
    assert worker != os.getpid()
    wait_for(
        lambda: not is_running(worker) and not is_running(child),
        timeout_s=5,
        what="the worker and its child to be dead",
    )
    [failed] = failed_rounds(data)
    assert "timed out after 1 s" in json.loads((failed / "error.json").read_text())["error"]


def test_5_mb_of_output_reaches_the_log_and_the_round_succeeds(
    make_node, storescp: StoreSCPPeer, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="dicomflow.process")
    node = make_node(ChattyPipeline, endpoints=[storescp.endpoint()])
    sent = send_series(node.port, tmp_path / "chatty", count=2)
    wait_for(lambda: len(storescp.files()) == 2, timeout_s=60, what="results at storescp")

    assert node.counters.rounds_succeeded == 1
    assert node.counters.rounds_failed == 0
    received = {str(pydicom.dcmread(path).SOPInstanceUID) for path in storescp.files()}
    assert received == {str(ds.SOPInstanceUID) for ds in sent}
    assert all(pydicom.dcmread(path).ImageComments == MARK for path in storescp.files())
    relayed = [
        record.getMessage()
        for record in caplog.records
        if record.name == "dicomflow.process" and record.getMessage().endswith(CHATTY_LINE)
    ]
    assert len(relayed) == 2 * 2560  # every line of stdout and of stderr, none cut
    assert sum(len(line) for line in relayed) > 5 * 1024 * 1024


def test_process_runs_in_another_process_in_a_fresh_working_directory(make_node, tmp_path: Path):
    data = tmp_path / "data"
    node = make_node(WorkdirPipeline)
    seen = []
    for number in (1, 2):
        send_series(node.port, tmp_path / f"series{number}", count=1)
        wait_for(lambda n=number: node.counters.rounds_succeeded == n, what=f"round {number}")
        workdir, pid = (tmp_path / "records" / "workdir.txt").read_text().splitlines()
        seen.append((Path(workdir), int(pid)))

    (first, first_pid), (second, second_pid) = seen
    rounds = (data / "rounds").resolve()
    for workdir in (first, second):
        assert workdir.name == "work"
        assert workdir.parent.parent == rounds  # rounds/{round_id}/work
        assert not workdir.exists()  # removed, scratch files and all, after the round
    assert first != second
    assert os.getpid() not in (first_pid, second_pid)
    assert first_pid != second_pid
