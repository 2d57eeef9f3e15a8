"""Latency of requests on one kept-alive HTTP connection to the dashboard.

Starts the web server alone (no node, no archive) on a free loopback port and
sends N requests over one persistent connection, the way dicomweb-client and
browsers do, then prints p50 and p95. ``/health`` is cheap to answer, so the
figures are the server's per-request overhead and any wait in the TCP stack
(Nagle's algorithm against delayed ACKs when ``TCP_NODELAY`` is off).

    .venv/bin/python bench/web_latency.py [--requests 200] [--path /health]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse
import statistics
import tempfile
import time

import httpx

from dicomflow.settings import build_settings
from dicomflow.web import WebContext, WebServer, create_app
from dicomflow.web.auth import Credentials

TOKEN = "bench-token"


def kept_alive_latencies(url: str, path: str, count: int) -> list[float]:
    """Seconds per request for ``count`` requests on one connection (after one warm-up)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        client.get(path).raise_for_status()
        latencies = []
        for _ in range(count):
            start = time.perf_counter()
            client.get(path).raise_for_status()
            latencies.append(time.perf_counter() - start)
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--path", default="/health")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = build_settings(data_directory=Path(folder) / "data")
        server = WebServer(create_app(WebContext(settings, Credentials(TOKEN), None)), port=0)
        server.start()
        try:
            latencies = kept_alive_latencies(server.url, args.path, args.requests)
        finally:
            server.stop()
    p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
    mean = statistics.fmean(latencies) * 1000
    print(
        f"{args.requests} kept-alive GET {args.path}: p50 {p50:.2f} ms, p95 {p95:.2f} ms, ", end=""
    )
    print(f"mean {mean:.2f} ms")


if __name__ == "__main__":
    main()
