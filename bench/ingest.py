"""How fast do receivers take C-STOREs from dcmtk ``storescu`` over one association?

Usage::

    .venv/bin/python bench/ingest.py [--small N] [--large N] [--reference-small N]
                                     [--reference-large N] [--associations N]
                                     [--tls | --only-tls] [--workdir DIR] [--keep]

Generates N small (64x64, ~9 kB) and N large (512x512, ~0.5 MB) CT instances as
Part-10 files, then sends each data set with ONE ``storescu`` association (or
``--associations`` concurrent ones, the files dealt out among them) over
loopback to each receiver (see ``bench/receivers.py``) and prints instances/s
and MB/s (10^6 bytes of Part-10 files sent per second of ``storescu`` run
time, association set-up included). Each dicomflow receiver runs ``--repeat``
times (a fresh process each time) and the median run is shown, with the range
of instances/s. The slow reference receivers (dcmtk ``storescp``, stock
pynetdicom) run once, on the first ``--reference-*`` instances only; their
rates are computed from what they received.

``--tls`` adds, and ``--only-tls`` runs alone, the DICOM TLS rows: ``storescu +tls``
(mutual TLS, one self-signed certificate trusted by both sides) to a node's TLS port
and, ``storescu`` plain, to the same node's plain port, to dcmtk ``storescp +tls`` and
to ``storescp`` plain: the node's ports ``--repeat`` times, interleaved (a fresh node
each time), the references once on their ``--reference-*`` instances; with the ratios
node TLS / node plain and node TLS / ``storescp +tls``.
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
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from instances import write_ct_series
from receivers import store_durably

RECEIVERS_SCRIPT = Path(__file__).resolve().parent / "receivers.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ASSOCIATIONS = 1  # concurrent storescu runs (--associations)


@dataclass
class Receiver:
    name: str
    kind: str  # "storescp" or a kind of bench/receivers.py
    reference: bool = False
    stores: bool = True
    tls: bool = False  # storescu +tls, to the receiver's TLS port


RECEIVERS = [
    Receiver("dcmtk storescp (default options)", "storescp", reference=True),
    Receiver("pynetdicom 3.0.4 stock SCP, write encoded_dataset()", "pynetdicom", reference=True),
    Receiver("pynetdicom 3.0.4 stock SCP, temp/fsync/rename", "pynetdicom-durable", reference=True),
    Receiver("dicomflow node, spool only (durable; the whole receive path)", "node"),
    Receiver("dicomflow lean SCP + node Spool with journal (durable)", "lean-spool"),
    Receiver("dicomflow lean SCP + node Spool without journal (durable)", "lean-spool-classic"),
    Receiver("dicomflow lean SCP + temp/fsync/rename (no directory fsync)", "lean"),
    Receiver("dicomflow lean SCP, nothing stored (network ceiling)", "lean-memory", stores=False),
    Receiver("dicomflow pynetdicom SCP (stock) + node Spool (durable)", "dicomflow-spool"),
    Receiver(
        "dicomflow pynetdicom SCP (stock), nothing stored (network ceiling)",
        "dicomflow-memory",
        stores=False,
    ),
    Receiver("no network: temp/fsync/rename of the files' bytes (disk ceiling)", "disk"),
]
NODE_TLS = Receiver("dicomflow node, TLS port (mutual TLS)", "node-tls", tls=True)
NODE_PLAIN = Receiver("dicomflow node, plain port of the same node", "node-tls")
STORESCP_TLS = Receiver(
    "dcmtk storescp +tls (mutual TLS; reference)", "storescp", reference=True, tls=True
)
STORESCP_PLAIN = Receiver("dcmtk storescp (reference)", "storescp", reference=True)
TLS_RECEIVERS = [NODE_TLS, NODE_PLAIN, STORESCP_TLS, STORESCP_PLAIN]
TLS_TARGETS = {64: 0.8, 512: 0.6}  # node TLS / node plain, instances/s
TLS_IDENTITY: Path | None = None  # certificate.pem + private-key.pem, set by main()


@dataclass
class Run:
    receiver: Receiver
    sent: int
    stored: int
    seconds: float
    megabytes: float
    cpu_seconds: float
    ok: bool
    range_per_second: tuple[float, float] = (0.0, 0.0)

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.megabytes / self.seconds


def main() -> None:
    global ASSOCIATIONS
    args = parse_args()
    ASSOCIATIONS = args.associations
    workdir = Path(tempfile.mkdtemp(prefix="dicomflow-bench-", dir=args.workdir))
    try:
        print_context(workdir)
        for label, count, references, size in (
            ("small", args.small, args.reference_small, 64),
            ("large", args.large, args.reference_large or args.large, 512),
        ):
            if count:
                files = generate(workdir / "data" / label, count, size)
                if args.only_tls:
                    continue
                if ASSOCIATIONS > 1:
                    label = f"{label}, {ASSOCIATIONS} concurrent associations"
                output = workdir / "out" / label
                receivers = RECEIVERS
                if args.only:
                    receivers = [r for r in receivers if r.kind in args.only]
                runs = [measure(r, files, references, output, args.repeat) for r in receivers]
                print_table(f"{label}: {count} instances of {size}x{size}", runs)
        if args.tls or args.only_tls:
            measure_tls(workdir, args)
        if args.latency_rounds and not args.only_tls:
            print_latency(args.latency_rounds)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def print_latency(rounds: int) -> None:
    """Release -> process() latency of a node, beside spawn's start-up (bench/latency.py)."""
    print("\n### latency: association release -> process() start\n")
    script = Path(__file__).with_name("latency.py")
    subprocess.run([sys.executable, str(script), "--rounds", str(rounds)], check=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000, help="64x64 instances (1000)")
    parser.add_argument("--large", type=int, default=300, help="512x512 instances (300)")
    parser.add_argument(
        "--reference-small", type=int, default=100, help="small instances for the references"
    )
    parser.add_argument(
        "--reference-large", type=int, default=0, help="large instances for the references (all)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per dicomflow receiver (3)")
    parser.add_argument(
        "--latency-rounds", type=int, default=30, help="rounds for the latency part (0: skip)"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="KIND", help="run only these receiver kinds (see receivers.py)"
    )
    parser.add_argument(
        "--associations",
        type=int,
        default=1,
        help="concurrent storescu associations the instances are dealt out to (1)",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="add the DICOM TLS rows")
    tls.add_argument(
        "--only-tls", action="store_true", help="run only the DICOM TLS rows (no latency part)"
    )
    parser.add_argument("--workdir", help="where to put the temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args()


def print_context(workdir: Path) -> None:
    probe = workdir / "probe"
    probe.mkdir()
    started = time.perf_counter()
    for index in range(200):
        os.close(os.open(probe / str(index), os.O_WRONLY | os.O_CREAT, 0o600))
    per_file_ms = (time.perf_counter() - started) / 200 * 1000
    print(f"work directory {workdir}: creating a file costs {per_file_ms:.3f} ms")
    if per_file_ms > 0.2:
        print(
            "  (slow: ext4 without a journal passes over recently deleted inodes when it "
            "allocates one; try --workdir on a directory with less churn)"
        )


def generate(directory: Path, count: int, size: int) -> list[Path]:
    started = time.perf_counter()
    files = write_ct_series(count, size, directory)
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    print(f"generated {count} {size}x{size} instances ({megabytes:.1f} MB) in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    return files


def measure(
    receiver: Receiver, files: list[Path], references: int, output: Path, repeat: int
) -> Run:
    """Run ``receiver`` ``repeat`` times (once if a reference); return the median run."""
    if receiver.reference:
        files, repeat = files[:references], 1
    outputs = [output / f"{receiver.kind}-{index}" for index in range(repeat)]
    runs = sorted((measure_once(receiver, files, out) for out in outputs), key=lambda r: r.seconds)
    median = runs[len(runs) // 2]
    median.range_per_second = (runs[-1].per_second, runs[0].per_second)
    return median


def measure_once(receiver: Receiver, files: list[Path], output: Path) -> Run:
    output.mkdir(parents=True)
    if receiver.kind == "disk":
        return measure_disk(receiver, files, output)
    with start(receiver.kind, output, receiver.tls) as (port, pid):
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        ok = storescu(port, files, receiver.tls)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    spool = output / "spool" / "incoming"  # a whole node writes more than the instances
    stored = sum(
        1
        for path in (spool if spool.is_dir() else output).rglob("*")
        if path.is_file() and path.suffix not in (".part", ".journal")
    )
    megabytes = sum(path.stat().st_size for path in files) / 1e6
    return Run(receiver, len(files), stored, seconds, megabytes, cpu, ok)


def measure_disk(receiver: Receiver, files: list[Path], output: Path) -> Run:
    """Store the files' bytes durably in this process, as the durable receivers do."""
    contents = [path.read_bytes() for path in files]
    cpu_before, started = time.process_time(), time.perf_counter()
    for data in contents:
        store_durably(output, data)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    megabytes = sum(len(data) for data in contents) / 1e6
    return Run(receiver, len(files), len(files), seconds, megabytes, cpu, True)


@contextmanager
def start(kind: str, output: Path, tls: bool = False) -> Iterator[tuple[int, int]]:
    """Run a receiver in its own process; yield its (port, pid): its TLS port with ``tls``."""
    if kind == "storescp":
        port = free_port()
        command = ["storescp", *tls_options(tls), "-od", str(output), str(port)]
        # storescp +tls complains of the plain probe wait_for_listener makes: not shown.
        quiet = subprocess.DEVNULL if tls else None
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=quiet, text=True
        )
        wait_for_listener(port)
    else:
        command = [sys.executable, str(RECEIVERS_SCRIPT), kind, str(output)]
        if kind == "node-tls":
            command.append(str(TLS_IDENTITY))
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        if kind == "node-tls":
            tls_port = int(process.stdout.readline().split()[1])
            port = tls_port if tls else port
    try:
        yield port, process.pid
    finally:
        stop(process, kind)


def stop(process: subprocess.Popen[str], kind: str) -> None:
    if kind == "storescp":
        process.terminate()
    elif process.stdin is not None:
        process.stdin.close()
    process.wait(30)


def storescu(port: int, files: list[Path], tls: bool = False) -> bool:
    """Send ``files`` with ``ASSOCIATIONS`` concurrent ``storescu`` runs (one association
    each, the files dealt out in turn; over TLS with ``tls``); whether all succeeded."""
    command = ["storescu", *tls_options(tls), "-aet", "BENCH", "-aec", "RECEIVER"]
    command += ["127.0.0.1", str(port)]
    senders = [
        subprocess.Popen(
            [*command, *map(str, files[index::ASSOCIATIONS])],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(min(ASSOCIATIONS, len(files)))
    ]
    ok = True
    for sender in senders:
        _, stderr = sender.communicate()
        if sender.returncode != 0:
            print(f"storescu failed ({sender.returncode}): {stderr[-500:]}", file=sys.stderr)
            ok = False
    return ok


def tls_options(tls: bool) -> list[str]:
    """dcmtk's options for mutual TLS with the benchmark's self-signed certificate (both
    sides present it and trust only it); none without ``tls``."""
    if not tls:
        return []
    assert TLS_IDENTITY is not None
    certificate = str(TLS_IDENTITY / "certificate.pem")
    return ["+tls", str(TLS_IDENTITY / "private-key.pem"), certificate, "+cf", certificate]


def measure_tls(workdir: Path, args: argparse.Namespace) -> None:
    """The TLS rows for the small and the large instances generated by ``main``."""
    global TLS_IDENTITY
    from dicomflow.tls import make_self_signed

    TLS_IDENTITY = make_self_signed(workdir / "tls", common_name="BENCH").certificate.parent
    for label, count, references, size in (
        ("small", args.small, args.reference_small, 64),
        ("large", args.large, args.reference_large or args.large, 512),
    ):
        if count:
            files = sorted((workdir / "data" / label).glob("*.dcm"))
            output = workdir / "out" / f"tls-{label}"
            runs = measure_interleaved(TLS_RECEIVERS, files, references, output, args.repeat)
            print_tls_table(f"DICOM TLS, {label}: {count} instances of {size}x{size}", runs, size)


def measure_interleaved(
    receivers: list[Receiver], files: list[Path], references: int, output: Path, repeat: int
) -> list[Run]:
    """Each dicomflow receiver ``repeat`` times, in turn (a loaded machine slows all
    alike), the median run of each with its range; a reference once, on the first
    ``references`` files (storescp takes ~90 ms an instance from storescu)."""
    runs: list[list[Run]] = [[] for _ in receivers]
    for index in range(repeat):
        for receiver, found in zip(receivers, runs, strict=True):
            if receiver.reference and index:
                continue
            sent = files[:references] if receiver.reference else files
            name = f"{receiver.kind}-{'tls' if receiver.tls else 'plain'}-{index}"
            found.append(measure_once(receiver, sent, output / name))
    medians = []
    for found in runs:
        ordered = sorted(found, key=lambda run: run.seconds)
        median = ordered[len(ordered) // 2]
        median.range_per_second = (ordered[-1].per_second, ordered[0].per_second)
        medians.append(median)
    return medians


def print_tls_table(title: str, runs: list[Run], size: int) -> None:
    node_tls, node_plain, storescp_tls = runs[0], runs[1], runs[2]
    print(f"\n### {title}\n")
    print("| receiver | sent | stored | s | instances/s (range) | MB/s | receiver CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        failed = not run.ok or run.stored != run.sent
        print(
            f"| {run.receiver.name}{' (FAILED)' if failed else ''} | {run.sent} | {run.stored} "
            f"| {run.seconds:.2f} | {run.per_second:.0f}{spread(run)} "
            f"| {run.megabytes_per_second:.1f} | {run.cpu_seconds:.2f} |"
        )
    plain = node_tls.per_second / node_plain.per_second
    target = TLS_TARGETS[size]
    versus_storescp = node_tls.per_second / storescp_tls.per_second
    storescp_cost = storescp_tls.per_second / runs[3].per_second
    cpu = [run.cpu_seconds / run.sent * 1e3 for run in (node_tls, node_plain)]
    print(f"\nnode TLS / node plain: {plain:.2f} (target >= {target}: "
          f"{'met' if plain >= target else 'MISSED'}); node TLS / storescp +tls: "
          f"{versus_storescp:.2f}; storescp +tls / storescp: {storescp_cost:.2f}; "
          f"node CPU per instance, TLS / plain: {cpu[0]:.2f} / {cpu[1]:.2f} ms")  # fmt: skip


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_listener(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port}")


def print_table(title: str, runs: list[Run]) -> None:
    baseline = {run.receiver.kind: run for run in runs}
    ratio = ratio_to(baseline.get("storescp")), ratio_to(baseline.get("pynetdicom"))
    print(f"\n### {title}\n")
    print("| receiver | sent | stored | s | instances/s (range) | MB/s | receiver CPU s "
          "| vs storescp | vs pynetdicom |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        stored = str(run.stored) if run.receiver.stores else "-"
        failed = not run.ok or (run.receiver.stores and run.stored != run.sent)
        print(
            f"| {run.receiver.name}{' (FAILED)' if failed else ''} | {run.sent} | {stored} "
            f"| {run.seconds:.2f} "
            f"| {run.per_second:.0f}{spread(run)} | {run.megabytes_per_second:.1f} "
            f"| {run.cpu_seconds:.2f} "
            f"| {ratio[0](run)} | {ratio[1](run)} |"
        )


def spread(run: Run) -> str:
    low, high = run.range_per_second
    return f" ({low:.0f}-{high:.0f})" if low != high else ""


def ratio_to(reference: Run | None) -> Callable[[Run], str]:
    def ratio(run: Run) -> str:
        if reference is None:
            return "-"
        return f"{run.per_second / reference.per_second:.1f}"

    return ratio


if __name__ == "__main__":
    main()
