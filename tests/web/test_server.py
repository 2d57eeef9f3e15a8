"""The web server's connections: requests on a kept-alive connection are answered at once."""

import statistics
import time
from pathlib import Path

from dicomflow.settings import build_settings


def test_kept_alive_requests_do_not_wait_for_delayed_acks(tmp_path: Path, web_for) -> None:  # type: ignore[no-untyped-def]
    web = web_for(settings=build_settings(data_directory=tmp_path / "data"))
    with web.client() as http:
        http.get("/health").raise_for_status()
        latencies = []
        for _ in range(20):
            start = time.perf_counter()
            http.get("/dicomweb/studies").raise_for_status()
            latencies.append(time.perf_counter() - start)
    # Without TCP_NODELAY each response waits ~40 ms for the client's delayed ACK.
    assert statistics.median(latencies) < 0.020, latencies
