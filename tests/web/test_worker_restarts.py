"""A local worker that died and was started again shows on the overview and in /metrics,
and the job it was running shows the interruption on its page."""

import re
import signal
from pathlib import Path

from web_pipelines import CTAndMRPipeline, NapPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.queue.job import JobStatus
from support import storescu, wait_for


def test_a_restarted_worker_is_counted_on_the_overview_and_in_metrics(make_node, web_for):  # type: ignore[no-untyped-def]
    node = make_node(CTAndMRPipeline)
    web = web_for(node)
    with web.client() as client:
        before = _restarts(client.get("/metrics").text)
        node.workers.processes[0].send_signal(signal.SIGKILL)
        wait_for(lambda: node.counters.worker_restarts == 1, 30, "the worker's restart")
        overview = client.get("/api/overview").json()
        page = client.get("/").text
        after = _restarts(client.get("/metrics").text)

    assert overview["counters"]["worker_restarts"] == 1
    assert re.search(r"worker restarts</th><td[^>]*>1<", page)
    assert after == before + 1


def test_the_page_of_a_job_whose_worker_died_shows_the_interruption(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path
):
    node = make_node(NapPipeline)
    web = web_for(node)
    storescu(node.port, write_series(make_ct_series(1, rows=8, columns=8), tmp_path / "ct"))
    data = tmp_path / "data"
    wait_for(lambda: any((data / "rounds").glob("*/work")), 30, "processing to start")
    node.workers.processes[0].send_signal(signal.SIGKILL)
    wait_for(lambda: node.counters.rounds_succeeded == 1, 40, "the round run again")
    (job,) = node._queue.get().jobs()
    with web.client() as client:
        detail = client.get(f"/api/jobs/{job.id}").json()
        page = client.get(f"/jobs/{job.id}").text

    assert detail["status"] == JobStatus.FINISHED.value
    assert (detail["attempts"], detail["interruptions"]) == (2, 1)
    assert "1 interrupted by the death of their worker, not counted against the retries" in page


def _restarts(metrics: str) -> float:
    found = re.search(r"^dicomflow_worker_restarts_total (\S+)$", metrics, re.MULTILINE)
    assert found, "dicomflow_worker_restarts_total is not exposed"
    return float(found.group(1))
