"""A local worker that died and was started again shows on the overview and in /metrics."""

import re
import signal

from web_pipelines import CTAndMRPipeline

from support import wait_for


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


def _restarts(metrics: str) -> float:
    found = re.search(r"^dicomflow_worker_restarts_total (\S+)$", metrics, re.MULTILINE)
    assert found, "dicomflow_worker_restarts_total is not exposed"
    return float(found.group(1))
