"""End to end: a node hands stable series to two registry services on a real queue.

The example services of ``examples/services``: "measure" (its callback passes a
threshold on) and "mask" (depends on "measure", reads that threshold from
``added_params`` and writes a bone-mask series). The node sends the mask to a
dcmtk ``storescp``.
"""

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicomflow import metrics
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.services.consumer import ServiceScheduler
from dicomflow.services.install import install
from dicomflow.settings import build_settings
from support import RedisServer, StoreSCPPeer, storescu, wait_for

EXAMPLES = Path(__file__).parents[2] / "examples" / "services"
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")


@pytest.fixture
def services_root(tmp_path: Path) -> Path:
    root = tmp_path / "services"
    install("measure", EXAMPLES / "measure", root)
    install("mask", EXAMPLES / "mask", root)
    return root


def start_node(tmp_path: Path, root: Path, url: str, endpoint: str, workers: int) -> Node:
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=[endpoint],
        services_directory=root,
        queue_url=url,
        queue_workers=workers,
        series_quiet_period_s=0.5,
        export_backoff_s=0.1,
    )
    node = Node(None, settings, ServiceScheduler(root, url))
    node.start()
    return node


def check_masks(storescp: StoreSCPPeer, count: int) -> None:
    wait_for(lambda: len(storescp.files()) == count, 120, "the mask series at storescp")
    masks = [pydicom.dcmread(path) for path in storescp.files()]
    assert {m.SeriesDescription for m in masks} == {"Bone mask (dicomflow service example)"}
    assert {m.ImageComments for m in masks} == {"threshold 300 HU"}  # via added_params
    for mask in masks:
        assert set(mask.pixel_array.ravel().tolist()) <= {0, 1}


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started = [
        subprocess.Popen([DICOMFLOW, "worker", "--queue", redis_server.url(), "--name", f"w{i}"])
        for i in range(2)
    ]
    yield started
    for process in started:
        process.send_signal(signal.SIGTERM)
    for process in started:
        process.wait(timeout=30)


def service_stages() -> dict[str, float]:
    """How many observations each stage of the service kind has."""
    return {
        stage: metrics.REGISTRY.get_sample_value(
            "dicomflow_stage_latency_seconds_count", {"stage": stage, "kind": "service"}
        )
        or 0.0
        for stage in metrics.STAGES
    }


def test_services_on_the_embedded_queue(tmp_path, services_root, storescp):
    url = f"sqlite:///{tmp_path / 'data' / 'queue.db'}"
    node = start_node(tmp_path, services_root, url, storescp.endpoint(), workers=2)
    before = service_stages()
    try:
        storescu(node.port, write_series(make_ct_series(4), tmp_path / "ct"))
        check_masks(storescp, 4)
        wait_for(lambda: not list((tmp_path / "data" / "series" / "rounds").iterdir()))
    finally:
        node.stop()
    after = service_stages()
    # One series batch, two jobs (measure, mask), one result delivered (the mask).
    assert {stage: after[stage] - before[stage] for stage in metrics.STAGES} == {
        metrics.INPUTS_COMPLETE: 1,
        metrics.JOB_STARTED: 2,
        metrics.JOB_FINISHED: 2,
        metrics.ACKNOWLEDGED: 1,
    }


def test_services_on_redis_with_two_workers(
    tmp_path, services_root, storescp, redis_server, workers
):
    node = start_node(tmp_path, services_root, redis_server.url(), storescp.endpoint(), 0)
    try:
        storescu(node.port, write_series(make_ct_series(4), tmp_path / "ct"))
        check_masks(storescp, 4)
    finally:
        node.stop()
    assert all(process.poll() is None for process in workers), "workers keep serving"
