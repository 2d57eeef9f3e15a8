"""Latency from association release to ``process()`` starting.

Starts a node (embedded defaults, warm forkserver) with a pipeline that
records when ``process()`` starts, then sends N one-patient series (4 instances
of 32x32 unless told otherwise), each over its own association, and measures
release -> start. For
comparison, in the same run, it measures how long a ``spawn`` child (the
seed's isolation) takes to start and import pydicom and numpy.

    .venv/bin/python bench/latency.py [--rounds 30] [--instances 4] [--pixels 32]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE / "pipelines"))

import argparse
import multiprocessing
import statistics
import tempfile
import time

from latency_pipeline import StampPipeline

from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series
from dicomflow.engine.node import wait_until
from dicomflow.net.requestor import send


def send_round(port: int, patient: str, instances: int, pixels: int) -> float:
    """Send one series over one association (dicomflow's SCU); return the time of release."""
    series = make_ct_series(instances, rows=pixels, columns=pixels, patient_id=patient)
    report = send(Address("127.0.0.1", port, "BENCH"), series, calling_ae_title="BENCH-SCU")
    if not report.ok:
        raise SystemExit(f"the node refused instances: {report.failed}")
    return time.time()


def measure_node(rounds: int, instances: int, pixels: int) -> list[float]:
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory)
        pipeline = StampPipeline(start=False, port=0, data_directory=data, log_level="WARNING")
        pipeline.open(blocking=False, configure_logs=False)
        node = pipeline.node
        latencies = []
        try:
            for index in range(rounds):
                released = send_round(node.port, f"LAT{index}", instances, pixels)
                stamps = data / "stamps"
                wait_until(lambda i=index, s=stamps: len(list(s.glob("*.txt"))) > i, 30, 0.001)
                newest = max(stamps.glob("*.txt"), key=lambda p: p.stat().st_mtime_ns)
                latencies.append(float(newest.read_text()) - released)
        finally:
            pipeline.close()
        return latencies


def _spawned(started: float, queue: "multiprocessing.Queue[float]") -> None:
    import numpy  # noqa: F401
    import pydicom  # noqa: F401

    queue.put(time.time() - started)


def measure_spawn(count: int) -> list[float]:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[float] = context.Queue()
    results = []
    for _ in range(count):
        process = context.Process(target=_spawned, args=(time.time(), queue))
        process.start()
        results.append(queue.get(timeout=60))
        process.join()
    return results


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--instances", type=int, default=4, help="instances per round")
    parser.add_argument("--pixels", type=int, default=32, help="rows and columns")
    args = parser.parse_args()
    node = measure_node(args.rounds, args.instances, args.pixels)
    spawn = measure_spawn(5)
    rounds = f"{args.rounds} rounds of {args.instances} {args.pixels}x{args.pixels}"
    print(f"release -> process() start, dicomflow node ({rounds}): {describe(node)}")
    print(f"spawn child start + import pydicom/numpy (5 runs):      {describe(spawn)}")
    print(
        f"ratio (spawn p50 / node p50): {statistics.median(spawn) / statistics.median(node):.1f}x"
    )


if __name__ == "__main__":
    main()
