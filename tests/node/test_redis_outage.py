"""Redis outages: a node and a ``dicomflow worker`` on Redis survive ``kill -9`` of the
server, with and without persistence, and every round is processed without restarting
either of them."""

import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from sample_pipelines import ArchivePipeline, CopyPipeline
from test_archive import archived

from dicomflow.cod import CODObject
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.services.consumer import ServiceScheduler
from dicomflow.services.install import install
from dicomflow.settings import build_settings
from support import StoreSCPPeer, free_port, storescu, wait_for, wait_for_port

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
EXAMPLES = Path(__file__).parents[2] / "examples" / "services"
OPTIONS = "heartbeat_s=0.5&stale_after_s=2"
PRELOAD = "&preload=dicomflow.engine.round_job,pydicom,numpy"  # the worker's jobs start warm
ROUNDS = 12
SERIES = 8
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


def received(storescp: StoreSCPPeer, keyword: str = "SOPInstanceUID") -> set[str]:
    uids = set()
    for path in storescp.files():
        try:
            uids.add(str(pydicom.dcmread(path, stop_before_pixels=True)[keyword].value))
        except (OSError, ValueError, EOFError, KeyError, InvalidDicomError):  # being written
            continue
    return uids


def start_service_node(tmp_path: Path, url: str, endpoint: str, archive: str | None) -> Node:
    """A node running the example services "measure" and "mask" (which writes a bone-mask
    series), its jobs on ``url``, reading the series from ``archive`` if given."""
    root = tmp_path / "services"
    install("measure", EXAMPLES / "measure", root)
    install("mask", EXAMPLES / "mask", root)
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=[endpoint],
        services_directory=root,
        queue_url=url,
        queue_workers=0,
        series_quiet_period_s=0.5,
        export_backoff_s=0.1,
        **({"archive_datastore": archive} if archive else {}),
    )
    services = ServiceScheduler(root, url)
    consumer = Consumers(services, ArchiveScheduler(archive, url)) if archive else services
    node = Node(None, settings, consumer)
    node.start()
    return node


@pytest.mark.parametrize("persistence", list(PERSISTENCE))
def test_every_round_survives_kill_9_of_redis(
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
        for files in patients[:3]:
            storescu(node.port, files)
        wait_for(lambda: len(received(storescp)) >= 2, 60, "the worker to process rounds")
        for files in patients[3:5]:  # in the queue or running when Redis dies
            storescu(node.port, files)
        redis.kill9()
        for files in patients[5:9]:  # acknowledged; their rounds wait for the queue
            storescu(node.port, files)
        wait_for(lambda: missed_redis(worker_log), 30, "the worker to miss Redis")
        redis.start()
        for files in patients[9:]:
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


@pytest.mark.parametrize("archived", [False, True], ids=["services", "archived-services"])
def test_service_series_survive_kill_9_of_redis(
    storescp: StoreSCPPeer, tmp_path: Path, archived: bool, caplog
):
    redis = RestartableRedis(tmp_path / "redis", "none")
    url = f"redis://127.0.0.1:{redis.port}/0?{OPTIONS}"
    series = [
        write_series(make_ct_series(2, patient_id=f"P{n}"), tmp_path / f"s{n}")
        for n in range(SERIES)
    ]
    worker_log = tmp_path / "worker.log"
    with worker_log.open("ab") as log:
        worker = subprocess.Popen(
            [DICOMFLOW, "worker", "--queue", url, "--name", "survivor"], stdout=log, stderr=log
        )
    archive = str(tmp_path / "archive") if archived else None
    node = start_service_node(tmp_path, url, storescp.endpoint(), archive)
    batches = tmp_path / "data" / "series" / "rounds"
    try:
        for files in series[:3]:
            storescu(node.port, files)
        wait_for(lambda: received(storescp), 120, "the worker to run the services")
        for files in series[3:5]:  # scheduled, or running, when Redis dies
            storescu(node.port, files)
        time.sleep(0.8)
        redis.kill9()
        for files in series[5:7]:  # stable while Redis is down: the queue does not take them
            storescu(node.port, files)
        wait_for(lambda: missed_redis(worker_log), 30, "the worker to miss Redis")
        refused = "the queue did not take its jobs"
        wait_for(lambda: any(refused in r.getMessage() for r in caplog.records), 30, refused)
        redis.start()
        for files in series[7:]:
            storescu(node.port, files)
        wait_for(lambda: len(received(storescp)) >= 2 * SERIES, 180, "every series' mask")
        wait_for(lambda: not any(batches.iterdir()), 60, "every batch to end")

        assert worker.poll() is None, "the worker exited"
        assert len(received(storescp)) == 2 * SERIES  # each mask sent once
        assert len(received(storescp, "SeriesInstanceUID")) == SERIES
        assert not any((tmp_path / "data" / "series" / "failed").iterdir())
    finally:
        node.stop()
        worker.terminate()
        worker.wait(timeout=30)
        redis.stop()
    vanished = sum("no longer in the queue" in r.getMessage() for r in caplog.records)
    retried = sum(refused in r.getMessage() for r in caplog.records)
    print(f"\n{SERIES}/{SERIES} series: {retried} retried, {vanished} vanished job(s) again")


def test_an_archive_output_whose_job_vanished_with_redis_is_archived(make_node, tmp_path: Path):
    redis = RestartableRedis(tmp_path / "redis", "none")
    url = f"redis://127.0.0.1:{redis.port}/0?{OPTIONS}"
    series = make_ct_series(2)
    datastore = tmp_path / "data" / "archive"
    outbox = tmp_path / "data" / "archive-outbox"
    holder = CODObject(
        datastore_path=str(datastore),
        study_uid=str(series[0].StudyInstanceUID),
        series_uid=str(series[0].SeriesInstanceUID),
        lock=True,
    )
    with (tmp_path / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [DICOMFLOW, "worker", "--queue", url + PRELOAD], stdout=log, stderr=log
        )
    try:
        node = make_node(ArchivePipeline, queue_url=url, queue_workers=0)
        storescu(node.port, write_series(series, tmp_path / "s"))
        markers = lambda: [m.read_text() for m in outbox.glob(".*.json")]  # noqa: E731
        wait_for(lambda: any('"archive"' in m for m in markers()), 60, "the archive job")
        time.sleep(1)  # the lock is held: the job fails and waits for its retry
        redis.kill9()  # the job, waiting in Redis's memory, is lost
        redis.start()
        holder.release()

        wait_for(lambda: archived(datastore) == 2, 60, "the output archived by a new job")
        wait_for(lambda: not any(outbox.iterdir()), 30, "the archive outbox to empty")
        assert worker.poll() is None, "the worker exited"
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        redis.stop()
