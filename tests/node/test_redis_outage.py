"""Redis outages: a node and a ``dicomflow worker`` on Redis survive ``kill -9`` of the
server, with and without persistence, and every round is processed without restarting
either of them."""

import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from sample_pipelines import CopyPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, free_port, storescu, wait_for, wait_for_port

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
OPTIONS = "heartbeat_s=0.5&stale_after_s=2"
PRELOAD = "&preload=dicomflow.node.worker,pydicom,numpy"  # the worker's jobs start warm
ROUNDS = 20
PERSISTENCE = {
    "none": ["--save", "", "--appendonly", "no"],
    "appendonly": ["--save", "", "--appendonly", "yes", "--appendfsync", "always"],
    "rdb": ["--save", "1 1", "--appendonly", "no"],
}


class RestartableRedis:
    """A ``redis-server`` that can be killed and started again on its port and folder."""

    def __init__(self, folder: Path, persistence: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.options = PERSISTENCE[persistence]
        folder.mkdir(parents=True, exist_ok=True)
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.folder), *self.options]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        return self.process

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def missed_redis(worker_log: Path) -> bool:
    """Whether the worker noticed that Redis is gone (idle, between jobs or in one)."""
    text = worker_log.read_text()
    signs = ("starting again in", "could not connect", "does not answer")
    return any(sign in text for sign in signs)


def received(storescp: StoreSCPPeer) -> set[str]:
    uids = set()
    for path in storescp.files():
        try:
            uids.add(str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID))
        except (OSError, ValueError, EOFError):  # being written
            continue
    return uids


@pytest.mark.parametrize("persistence", list(PERSISTENCE))
def test_20_rounds_survive_kill_9_of_redis(
    make_node, storescp: StoreSCPPeer, tmp_path: Path, persistence: str, caplog
):
    redis = RestartableRedis(tmp_path / "redis", persistence)
    url = f"redis://127.0.0.1:{redis.port}/0?{OPTIONS}"
    patients = [
        write_series(make_ct_series(1, patient_id=f"P{n}"), tmp_path / f"p{n}")
        for n in range(ROUNDS)
    ]
    worker_log = tmp_path / "worker.log"
    with worker_log.open("ab") as log:
        worker = subprocess.Popen(
            [DICOMFLOW, "worker", "--queue", url + PRELOAD, "--name", "survivor"],
            stdout=log,
            stderr=log,
        )
    try:
        node = make_node(
            CopyPipeline, endpoints=[storescp.endpoint()], queue_url=url, queue_workers=0
        )
        started = time.monotonic()
        for files in patients[:5]:
            storescu(node.port, files)
        wait_for(lambda: len(received(storescp)) >= 3, 60, "the worker to process rounds")
        for files in patients[5:7]:  # in the queue or running when Redis dies
            storescu(node.port, files)
        redis.kill9()
        for files in patients[7:14]:  # acknowledged; their rounds wait for the queue
            storescu(node.port, files)
        wait_for(lambda: missed_redis(worker_log), 30, "the worker to miss Redis")
        redis.start()
        for files in patients[14:]:
            storescu(node.port, files)
        wait_for(lambda: len(received(storescp)) == ROUNDS, 120, "every round's results")
        elapsed = time.monotonic() - started

        assert worker.poll() is None, "the worker exited"
        assert node.counters.rounds_failed == 0
        assert not list((tmp_path / "data" / "rounds").iterdir())
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.stop()
    resubmitted = sum("no longer in the queue" in r.getMessage() for r in caplog.records)
    retried = sum("the queue did not take it" in r.getMessage() for r in caplog.records)
    print(
        f"\n{persistence}: {ROUNDS}/{ROUNDS} rounds in {elapsed:.1f} s;"
        f" {retried} submission(s) retried, {resubmitted} vanished job(s) submitted again"
    )


def test_a_round_whose_job_vanished_with_redis_is_submitted_again(
    make_node, storescp: StoreSCPPeer, tmp_path: Path
):
    redis = RestartableRedis(tmp_path / "redis", "none")
    url = f"redis://127.0.0.1:{redis.port}/0?{OPTIONS}"
    worker = None
    try:
        node = make_node(
            CopyPipeline, endpoints=[storescp.endpoint()], queue_url=url, queue_workers=0
        )
        storescu(node.port, write_series(make_ct_series(1), tmp_path / "p"))
        wait_for(lambda: list((tmp_path / "data" / "rounds").glob("*/job.json")), 30, "a job")
        redis.kill9()  # no worker yet: the job is only in Redis's memory, and is lost
        redis.start()
        with (tmp_path / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                [DICOMFLOW, "worker", "--queue", url + PRELOAD], stdout=log, stderr=log
            )

        wait_for(lambda: len(received(storescp)) == 1, 60, "the round's results")
        assert node.counters.rounds_failed == 0
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        redis.stop()
