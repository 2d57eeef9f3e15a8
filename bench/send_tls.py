"""What does DICOM TLS cost dicomflow's SCU? Plain ``storescp`` against ``storescp +tls``.

Usage::

    .venv/bin/python bench/send_tls.py [--small N] [--large N] [--runs N] [--workdir DIR]

Generates N small (64x64) and N large (512x512) CT instances and sends each set over
ONE association with :func:`dicomflow.net.requestor.send` (what exports and
``dicomflow send`` use), over loopback, to dcmtk ``storescp`` plain and with
``+tls`` (a self-signed certificate, ``-ic``), in the same run; each send is timed
from before associating to after the release (the TLS handshake included), the best
of ``--runs``. Then the large set over TLS again with the TLS write batch
(:data:`dicomflow.net.pdu.TLS_BATCH_BYTES`) at 256 KiB, 1 MiB and 4 MiB, and without
batching (a ``sendall`` per buffer) for comparison.
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/queue.py would shadow the standard queue module: load that one first.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
import queue  # noqa: F401

sys.path.insert(0, str(BENCH_DIR))

import argparse
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from instances import write_ct_series

from dicomflow.address import Address
from dicomflow.net import pdu
from dicomflow.net.requestor import send
from dicomflow.tls import SelfSigned, TLSFiles, make_self_signed

BATCHES = {"none (a write per buffer)": 1, "256 KiB": 256 << 10, "1 MiB": 1 << 20, "4 MiB": 4 << 20}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def storescp(output: Path, pair: SelfSigned | None) -> Iterator[int]:
    """dcmtk storescp (with ``+tls`` given a pair) storing into ``output``; yields its port."""
    port = free_port()
    tls = ["+tls", str(pair.private_key), str(pair.certificate), "-ic"] if pair else []
    command = ["storescp", "-aet", "PACS", "-od", str(output), *tls, str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # a connect probe would cost a failed TLS handshake
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                break
        time.sleep(0.05)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def timed(port: int, files: list[Path], tls: TLSFiles | None) -> float:
    started = time.perf_counter()
    report = send(Address("127.0.0.1", port, "PACS"), files, tls=tls)
    seconds = time.perf_counter() - started
    if not report.ok:
        raise SystemExit(f"not every instance was sent: {list(report.failed.items())[:3]}")
    return seconds


def best(port: int, files: list[Path], tls: TLSFiles | None, runs: int, output: Path) -> float:
    times = []
    for _ in range(runs):
        times.append(timed(port, files, tls))
        for path in output.iterdir():
            path.unlink()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200, help="64x64 instances (200)")
    parser.add_argument("--large", type=int, default=50, help="512x512 instances (50)")
    parser.add_argument("--runs", type=int, default=3, help="sends per case; the best counts")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dicomflow-send-tls-"))
    pair = make_self_signed(workdir / "tls", common_name="bench")
    trust = TLSFiles(ca_certificates=pair.certificate)
    sets = {
        f"{args.small} small (64x64)": write_ct_series(args.small, 64, workdir / "small"),
        f"{args.large} large (512x512)": write_ct_series(args.large, 512, workdir / "large"),
    }
    print("| instances | plain s | plain inst/s | TLS s | TLS inst/s | TLS/plain |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, files in sets.items():
        rates = {}
        for name, peer_pair, tls in (("plain", None, None), ("tls", pair, trust)):
            output = workdir / f"out-{name}"
            output.mkdir(exist_ok=True)
            with storescp(output, peer_pair) as port:
                rates[name] = best(port, files, tls, args.runs, output)
        plain, secure = rates["plain"], rates["tls"]
        print(
            f"| {label} | {plain:.2f} | {len(files) / plain:.0f} | {secure:.2f} "
            f"| {len(files) / secure:.0f} | {plain / secure:.2f} |",
            flush=True,
        )
    large = sets[f"{args.large} large (512x512)"]
    print("\n| TLS write batch | large over TLS s | inst/s |")
    print("|---|---:|---:|")
    output = workdir / "out-batch"
    output.mkdir(exist_ok=True)
    with storescp(output, pair) as port:
        for label, size in BATCHES.items():
            pdu.TLS_BATCH_BYTES = size
            seconds = best(port, large, trust, args.runs, output)
            print(f"| {label} | {seconds:.2f} | {len(large) / seconds:.0f} |", flush=True)
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
