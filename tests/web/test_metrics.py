"""``/metrics``: a real node receives from dcmtk ``storescu``, runs a round and exports to
dcmtk ``storescp``; the scrape shows each step. Counters are process-wide, so the tests
compare scrapes taken before and after."""

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pydicom
import pytest
from prometheus_client.parser import text_string_to_metric_families
from web_support import WebNode

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import value_key
from dicomflow.engine.round_store import RoundStore
from dicomflow.engine.spool import Spool
from dicomflow.metrics import STAGES
from dicomflow.queue.backend import open_backend
from dicomflow.queue.function import load_module_from_file
from dicomflow.queue.job import Job, JobStatus, job_kind
from dicomflow.settings import build_settings
from dicomflow.web.prometheus import CountingBackend
from support import PeerStarter, StoreSCPPeer, free_port, storescu, wait_for

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def sample_pipelines() -> ModuleType:
    """The node tests' pipelines (importable by file, as the workers import them)."""
    loaded = sys.modules.get("sample_pipelines")
    path = Path(__file__).parents[1] / "node" / "sample_pipelines.py"
    return loaded or load_module_from_file(str(path), "sample_pipelines")


def scrape(web: WebNode) -> Samples:
    with web.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def stage(samples: Samples, name: str, suffix: str, kind: str = "pipeline") -> float:
    return value(samples, f"dicomflow_stage_latency_seconds_{suffix}", stage=name, kind=kind)


def echoscu(port: int, ae_title: str) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-aet", ae_title, "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_round_is_counted_from_reception_to_acknowledgement(
    make_node: Any, web_for: Any, storescp: StoreSCPPeer, tmp_path: Path
) -> None:
    pipelines = sample_pipelines()
    node = make_node(
        pipelines.CopyPipeline, endpoints=[storescp.endpoint()], allowed_ae_titles=["STORESCU"]
    )
    web = web_for(node)
    before = scrape(web)
    files = write_series(make_ct_series(3), tmp_path / "series")
    storescu(node.port, files)
    refused = storescu(node.port, files[:1], aet="INTRUDER", check=False)
    assert refused.returncode != 0
    assert echoscu(node.port, "STORESCU").returncode == 0
    with web.client() as http:  # an upload refused at its edge, STOW-RS
        boundary = "b"
        refused_upload = http.post(
            "/dicomweb/studies",
            content=f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nnot DICOM\r\n"
            f"--{boundary}--\r\n",
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
    assert refused_upload.status_code == 409
    wait_for(lambda: node.counters.delivered == 1, 60, "the results to be delivered")
    after = scrape(web)

    assert delta(before, after, "dicomflow_instances_received_total") == 3
    pixels = sum(len(pydicom.dcmread(path).PixelData) for path in files)
    assert delta(before, after, "dicomflow_received_bytes_total") >= pixels
    assert delta(before, after, "dicomflow_associations_total") == 2
    assert delta(before, after, "dicomflow_echoes_total") == 1
    assert delta(before, after, "dicomflow_rejections_total", reason="ae_title") == 1
    assert delta(before, after, "dicomflow_rejections_total", reason="malformed") == 1
    assert delta(before, after, "dicomflow_rejections_total", reason="ip") == 0
    assert delta(before, after, "dicomflow_exports_total", outcome="delivered") == 1
    assert delta(before, after, "dicomflow_instances_exported_total") == 3
    assert delta(before, after, "dicomflow_export_retries_total") == 0
    for name in STAGES:
        assert stage(after, name, "count") - stage(before, name, "count") == 1, name
        assert stage(after, name, "sum") >= stage(before, name, "sum"), name
    assert value(after, "dicomflow_jobs", status="finished", kind="pipeline") == 1
    assert value(after, "dicomflow_jobs", status="failed", kind="pipeline") == 0
    assert value(after, "dicomflow_queue_depth") == 0
    assert value(after, "dicomflow_queue_up") == 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_a_connection_from_an_ip_address_not_allowed_is_counted(
    make_node: Any, web_for: Any, tmp_path: Path
) -> None:
    node = make_node(sample_pipelines().CopyPipeline, allowed_ips=["192.0.2.0/24"])
    web = web_for(node)
    before = scrape(web)
    assert echoscu(node.port, "ECHOSCU").returncode != 0
    after = scrape(web)
    assert delta(before, after, "dicomflow_rejections_total", reason="ip") == 1
    assert delta(before, after, "dicomflow_associations_total") == 0
    assert delta(before, after, "dicomflow_echoes_total") == 0


def test_export_retries_and_the_wait_for_the_endpoint_survive_a_restart(
    make_node: Any, web_for: Any, storescp_on: PeerStarter, tmp_path: Path
) -> None:
    """The endpoint is down: the retries are counted and the results kept; the node
    restarts, the endpoint comes up, and the latency to the acknowledgement covers the
    whole wait (the job's end time is kept on disk with the results)."""
    pipelines = sample_pipelines()
    port = free_port()
    settings = {"endpoints": [f"PACS@127.0.0.1:{port}"], "export_backoff_s": 0.05}
    first = make_node(pipelines.CopyPipeline, export_retries=2, **settings)
    web = web_for(first)
    before = scrape(web)
    storescu(first.port, write_series(make_ct_series(2), tmp_path / "series"))
    wait_for(
        lambda: delta(before, scrape(web), "dicomflow_exports_total", outcome="kept") == 1,
        30,
        "the results to be kept for later",
    )
    kept = scrape(web)
    assert delta(before, kept, "dicomflow_export_retries_total") == 2
    assert delta(before, kept, "dicomflow_export_failures_total") == 3
    assert stage(kept, "acknowledged", "count") == stage(before, "acknowledged", "count")
    first.stop()
    time.sleep(0.5)
    pacs = storescp_on(port)
    second = make_node(pipelines.CopyPipeline, **settings)
    wait_for(lambda: second.counters.delivered == 1, 30, "the delivery after the restart")
    assert len(list(pacs.iterdir())) == 2
    after = scrape(web)
    assert delta(kept, after, "dicomflow_exports_total", outcome="delivered") == 1
    assert stage(after, "acknowledged", "count") - stage(kept, "acknowledged", "count") == 1
    waited = stage(after, "acknowledged", "sum") - stage(kept, "acknowledged", "sum")
    assert waited >= 0.5 + 0.05 + 0.1, "the wait includes the downtime and the backoffs"


def test_a_rounds_times_are_kept_in_its_manifest(tmp_path: Path) -> None:
    """A round resumed after a restart is timed from when its inputs were complete and
    exported timed from when its job ended."""
    spool = Spool(tmp_path / "spool", fsync=False)
    rounds = RoundStore(tmp_path, spool)
    patient = value_key("PAT-1")
    path = spool.store(patient, "1.2.3", b"instance")
    job = rounds.create("pipe.Pipeline", patient, {"any": {"1.2.3": path}})
    rounds.processed(job, job.created + 42.0)
    (resumed,) = rounds.pending()
    assert resumed.created == job.created
    assert resumed.processed_at == job.created + 42.0


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
def test_jobs_by_status_and_kind_are_read_from_each_queue(
    tmp_path: Path, web_for: Any, request: pytest.FixtureRequest, engine: str
) -> None:
    """Two dashboards in one process, each counting the jobs of its own queue."""
    url = request.getfixturevalue("redis_server").url() if engine == "redis" else None
    first = build_settings(data_directory=tmp_path / "first", queue_url=url)
    second = build_settings(data_directory=tmp_path / "second")
    queue = open_backend(first.resolved_queue_url())
    try:
        parent = queue.enqueue(Job(function="os:getcwd", meta={"kind": "pipeline"}))
        queue.enqueue(Job(function="os:getcwd", meta={"service": "s"}, depends_on=[parent.id]))
        queue.enqueue(Job(function="os:getcwd", meta={"kind": "archive"}))
        queue.cancel(queue.enqueue(Job(function="os:getcwd", meta={"kind": "archive"})).id)
        queue.enqueue(Job(function="os:getcwd"))
        queue.enqueue(Job(function="os:getcwd", meta={"kind": 7, "service": None}))
        tally = Counter((job.status, job_kind(job.meta)) for job in queue.jobs())
        assert isinstance(queue, CountingBackend)
        assert queue.counts() == dict(tally), "the backend counts as the jobs read back"
    finally:
        queue.close()
    one, two = scrape(web_for(settings=first)), scrape(web_for(settings=second))
    assert value(one, "dicomflow_jobs", status="queued", kind="pipeline") == 1
    assert value(one, "dicomflow_jobs", status="deferred", kind="service") == 1
    assert value(one, "dicomflow_jobs", status="queued", kind="archive") == 1
    assert value(one, "dicomflow_jobs", status="canceled", kind="archive") == 1
    assert value(one, "dicomflow_jobs", status="queued", kind="other") == 1
    assert value(one, "dicomflow_jobs", status="queued", kind="service") == 1
    assert value(one, "dicomflow_queue_depth") == 5
    assert value(two, "dicomflow_queue_depth") == 0
    assert value(two, "dicomflow_jobs", status=JobStatus.QUEUED.value, kind="pipeline") == 0
    assert ("dicomflow_jobs", (("kind", "pipeline"), ("status", "queued"))) in two
