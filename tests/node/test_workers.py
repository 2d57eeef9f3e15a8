"""Local workers: one that dies is started again, and the round it ran is run again."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sample_pipelines import CopyPipeline, SlowPipeline

from dicomflow import metrics
from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, free_port, storescu, wait_for, wait_for_port

HERE = Path(__file__).parent
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")


def restarts() -> float:
    return metrics.REGISTRY.get_sample_value("dicomflow_worker_restarts_total") or 0.0


def send_patient(port: int, folder: Path, count: int = 2) -> None:
    series = make_ct_series(count, rows=16, columns=16, patient_id=folder.name)
    storescu(port, write_series(series, folder))


@pytest.mark.parametrize("queue", ["sqlite", "redis"])
def test_a_killed_idle_worker_is_started_again_and_counted(
    make_node, storescp: StoreSCPPeer, tmp_path: Path, queue: str, request: pytest.FixtureRequest
):
    on_redis = {}
    if queue == "redis":
        url = request.getfixturevalue("redis_server").url()
        on_redis = {"queue_url": f"{url}?heartbeat_s=0.5&stale_after_s=2", "queue_workers": 1}
    node = make_node(CopyPipeline, endpoints=[storescp.endpoint()], **on_redis)
    log = tmp_path / "data" / "logs" / "workers-0.log"
    wait_for(lambda: log.exists() and "started" in log.read_text(), 30, "the worker to start")
    before = restarts()
    victim = node.workers.processes[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    send_patient(node.port, tmp_path / "after-the-kill")

    wait_for(lambda: len(storescp.files()) == 2, 30, "the round after the worker was killed")
    assert node.workers.processes[0].pid != victim.pid
    assert node.workers.processes[0].poll() is None
    assert node.counters.worker_restarts == 1
    assert restarts() == before + 1


def test_a_round_whose_worker_was_killed_is_run_again_not_failed(
    make_node, storescp: StoreSCPPeer, tmp_path: Path
):
    data = tmp_path / "data"
    node = make_node(SlowPipeline, endpoints=[storescp.endpoint()])
    send_patient(node.port, tmp_path / "interrupted")
    wait_for(lambda: any((data / "rounds").glob("*/work")), 30, "processing to start")

    node.workers.processes[0].send_signal(signal.SIGKILL)

    wait_for(lambda: len(storescp.files()) == 2, 40, "the results of the round run again")
    assert not list((data / "failed").iterdir())
    assert node.counters.rounds_succeeded == 1 and node.counters.rounds_failed == 0
    (job,) = node._queue.get().jobs()
    assert (job.attempts, job.interruptions) == (2, 1)


def test_a_node_killed_with_its_workers_runs_the_round_again_at_once_when_restarted(
    storescp: StoreSCPPeer, tmp_path: Path
):
    data, port = tmp_path / "data", free_port()
    node = serve(port, data, storescp)
    send_patient(port, tmp_path / "interrupted")
    wait_for(lambda: any((data / "rounds").glob("*/work")), 30, "processing to start")
    os.killpg(node.pid, signal.SIGKILL)  # the node, its workers and the round's process
    node.wait(timeout=10)

    node = serve(port, data, storescp)
    try:
        # well before the queue's stale_after_s (30 s) would find the job abandoned
        wait_for(lambda: len(storescp.files()) == 2, 15, "the results of the round run again")
    finally:
        node.send_signal(signal.SIGINT)
        node.wait(timeout=30)
    assert not list((data / "failed").iterdir())


def serve(port: int, data: Path, storescp: StoreSCPPeer) -> subprocess.Popen[bytes]:
    """``dicomflow serve`` of the slow pipeline, in a process group of its own."""
    command = [DICOMFLOW, "serve", f"{HERE / 'sample_pipelines.py'}:SlowPipeline", "--no-web"]
    command += ["--port", str(port), "--data-dir", str(data), "--endpoint", storescp.endpoint()]
    data.mkdir(parents=True, exist_ok=True)
    with (data.parent / "node.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    wait_for_port(port, 30)
    return process
