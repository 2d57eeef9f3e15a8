"""C-ECHO latency while idle or hostile connections are open on the node's port.

Starts a node on the embedded defaults (as ``bench/associations.py``), opens N
connections that never associate (silent; a P-DATA-TF header declaring 16 MiB;
an A-ASSOCIATE-RQ trickled a byte every 2 s), then times dcmtk ``echoscu``
against the node and prints the median and worst echo time and how much the
node process grew (RSS) for each kind, as a markdown table.

    .venv/bin/python bench/idle.py [--connections 64] [--echoes 10]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE / "pipelines"))

import argparse
import contextlib
import logging
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

from spool_pipeline import SpoolOnlyPipeline

MiB = 1 << 20


def silent(connection: socket.socket) -> None:
    """Connects and sends nothing."""


def p_data_header(connection: socket.socket) -> None:
    connection.sendall(struct.pack(">BBI", 0x04, 0, 16 * MiB))


def trickle(connection: socket.socket) -> None:
    connection.sendall(b"\x01")


KINDS: dict[str, Callable[[socket.socket], None] | None] = {
    "none": None,
    "silent": silent,
    "P-DATA header declaring 16 MiB": p_data_header,
    "A-ASSOCIATE-RQ, a byte every 2 s": trickle,
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def echo_seconds(port: int) -> float:
    started = time.perf_counter()
    command = ["echoscu", "-to", "30", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return float("inf")  # refused: the slots are taken
    return time.perf_counter() - started


def measure(port: int, start: Callable[[socket.socket], None] | None, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    before = rss_bytes()
    connections = []
    stop = threading.Event()
    if start is not None:
        connections = [
            socket.create_connection(("127.0.0.1", port)) for _ in range(args.connections)
        ]
        for connection in connections:
            start(connection)
    if start is trickle:
        threading.Thread(target=keep_trickling, args=(connections, stop), daemon=True).start()
    time.sleep(0.5)  # every connection accepted
    times = [echo_seconds(port) for _ in range(args.echoes)]
    grown = rss_bytes() - before
    stop.set()
    for connection in connections:
        connection.close()
    time.sleep(0.5)
    return times, grown


def keep_trickling(connections: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(2.0):
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.sendall(b"\x00")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--echoes", type=int, default=10)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # one line per refused connection otherwise
    with tempfile.TemporaryDirectory() as data:
        pipeline = SpoolOnlyPipeline(
            start=False, port=0, data_directory=Path(data), log_level="ERROR", web_enabled=False
        )
        pipeline.open(blocking=False, configure_logs=False)
        try:
            port = pipeline.node.port
            header = f"| {args.connections} connections | echo median ms | echo max ms |"
            print(f"{header} RSS growth MiB |")
            print("|---|---:|---:|---:|")
            for label, start in KINDS.items():
                times, grown = measure(port, start, args)
                worst = max(times)
                shown = "refused" if worst == float("inf") else f"{worst * 1000:.0f}"
                median = statistics.median(times)
                median_shown = "refused" if median == float("inf") else f"{median * 1000:.0f}"
                print(f"| {label} | {median_shown} | {shown} | {grown / MiB:.1f} |")
        finally:
            pipeline.close()


if __name__ == "__main__":
    main()
