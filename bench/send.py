"""How fast does dicomflow's SCU (exports to endpoints, ``dicomflow send``) send?

Usage::

    .venv/bin/python bench/send.py [--small N] [--large N] [--reference N] [--workdir DIR]

Generates N small (64x64) and N large (512x512) CT instances as Part-10 files
and sends each set over ONE association, over loopback, to two receivers: dcmtk
``storescp`` (default options, what many PACS test set-ups run) and dicomflow's
lean receiver storing nothing (a peer that answers at once). Senders, each in
its own process: dcmtk ``storescu`` (the reference), dicomflow's SCU
(:func:`dicomflow.net.requestor.send`, what the node's exports and ``dicomflow send``
use), and stock pynetdicom 3 (``AE.associate`` + ``send_c_store`` of each file
read with ``dcmread``, nothing installed). Prints instances/s, MB/s and the
ratio to ``storescu`` into the same receiver. Time is the ``storescu`` run time,
and for the Python senders the time from before associating to after the
release, measured in their process (interpreter start-up and imports, about
0.5 s, excluded: the node's exports do not pay them). Slow pairs (anything into
``storescp`` but dicomflow's SCU) send only the first ``--reference`` instances.
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/queue.py would shadow the standard queue module (which pynetdicom and redis
# import): load the standard one first, with bench/ off sys.path, then allow bench/.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
import queue  # noqa: F401

sys.path.insert(0, str(BENCH_DIR))

import argparse
import subprocess
import tempfile
import time

from ingest import start
from instances import write_ct_series

SENDERS = ["storescu", "dicomflow", "pynetdicom"]
RECEIVER_NAMES = {"storescp": "dcmtk storescp", "lean-memory": "dicomflow lean SCP, nothing stored"}
SENDER_NAMES = {
    "storescu": "dcmtk storescu",
    "dicomflow": "dicomflow SCU (scu.send)",
    "pynetdicom": "pynetdicom 3.0.4 stock SCU",
}


def send_as(kind: str, port: int, files: list[str]) -> None:
    """Run in the sender's own process: send ``files`` to 127.0.0.1:``port`` and print
    the seconds it took, imports and interpreter start-up excluded."""
    from pydicom import dcmread
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from dicomflow.address import Address
    from dicomflow.net.requestor import send

    started = time.perf_counter()
    if kind == "dicomflow":
        report = send(Address("127.0.0.1", port, "RECEIVER"), [Path(f) for f in files])
        if not report.ok:
            raise SystemExit(f"{len(report.failed)} failed: {next(iter(report.failed.items()))}")
        print(time.perf_counter() - started)
        return
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="RECEIVER")
    if not assoc.is_established:
        raise SystemExit("no association")
    for name in files:
        status = assoc.send_c_store(dcmread(name))
        if not status or status.Status != 0:
            raise SystemExit(f"C-STORE of {Path(name).name} failed: {status or 'no response'}")
    assoc.release()
    print(time.perf_counter() - started)


def timed_send(sender: str, port: int, files: list[Path]) -> float:
    names = [str(path) for path in files]
    if sender == "storescu":
        command = ["storescu", "-aet", "BENCH", "-aec", "RECEIVER", "127.0.0.1", str(port), *names]
    else:
        command = [sys.executable, __file__, "--as-sender", sender, str(port), *names]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        raise SendFailed(lines[-1][:200])
    if sender == "storescu":
        return time.perf_counter() - started
    return float(result.stdout.split()[-1])


class SendFailed(Exception):
    """A sender did not deliver every instance (stock pynetdicom loses responses at times)."""


def run(label: str, files: list[Path], reference: int, workdir: Path) -> None:
    size = sum(path.stat().st_size for path in files)
    print(f"\n### {label}\n")
    print("| sender | receiver | sent | s | instances/s | MB/s | vs storescu |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for receiver_kind in RECEIVER_NAMES:
        rates: dict[str, float] = {}
        for sender in SENDERS:
            slow = receiver_kind == "storescp" and sender != "dicomflow"
            chosen = files[:reference] if slow and reference else files
            output = workdir / f"{receiver_kind}-{sender}-{label[:5]}"
            output.mkdir(parents=True)
            with start(receiver_kind, output, "full") as (port, _):
                try:
                    seconds = timed_send(sender, port, chosen)
                except SendFailed as exc:
                    print(
                        f"| {SENDER_NAMES[sender]} | {RECEIVER_NAMES[receiver_kind]} "
                        f"| {len(chosen)} | failed: {exc} | | | |",
                        flush=True,
                    )
                    continue
            rate = len(chosen) / seconds
            rates[sender] = rate
            megabytes = rate * size / len(files) / 1e6
            ratio = rate / rates["storescu"] if "storescu" in rates else float("nan")
            print(
                f"| {SENDER_NAMES[sender]} | {RECEIVER_NAMES[receiver_kind]} | {len(chosen)} "
                f"| {seconds:.2f} | {rate:.0f} | {megabytes:.1f} | {ratio:.1f} |",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-sender":
        send_as(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="64x64 instances (1000)")
    parser.add_argument("--large", type=int, default=300, help="512x512 instances (300)")
    parser.add_argument(
        "--reference", type=int, default=100, help="instances for the slow pairs (100; 0: all)"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dicomflow-send-", dir=args.workdir) as directory:
        workdir = Path(directory)
        small = write_ct_series(args.small, 64, workdir / "small")
        large = write_ct_series(args.large, 512, workdir / "large")
        run(f"small: {args.small} instances of 64x64", small, args.reference, workdir)
        run(f"large: {args.large} instances of 512x512", large, args.reference, workdir)


if __name__ == "__main__":
    main()
