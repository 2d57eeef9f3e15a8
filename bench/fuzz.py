"""A longer fuzz run of the node's receive path (the same cases as ``tests/net/test_fuzz.py``).

Starts a node (lean receiver, real decoding and spool, fsync off) in this process and
runs seeded, mutated associations against it (``tests/net/fuzzing.py``): association
requests, command sets, datasets, framing and PDU order. Prints the count of each
outcome, the DIMSE statuses received, every distinct exception that escaped an
association thread (with the first case that raised it), hangs, the node's RSS growth,
and whether C-ECHO still works.

    .venv/bin/python bench/fuzz.py [--seed 1] [--cases 100000] [--hang-s 10]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "tests" / "net"))

import argparse
import logging
import tempfile
import time
import warnings
from collections import Counter

from fuzzing import FuzzedPipeline, Generator, Outcomes, resident_bytes, run

from dicomflow.address import Address
from dicomflow.net import requestor

MIB = 1 << 20
BATCH = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--hang-s", type=float, default=10.0, help="a case still open after")
    arguments = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom warns about every invalid value
    logging.disable(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        pipeline = FuzzedPipeline(
            start=False,
            port=0,
            data_directory=Path(folder) / "data",
            queue_workers=0,
            fsync=False,
            web_enabled=False,
        )
        pipeline.open(blocking=False, configure_logs=False)
        try:
            fuzz(pipeline.node, arguments.seed, arguments.cases, arguments.hang_s)
        finally:
            pipeline.close()


def fuzz(node: object, seed: int, cases: int, hang_s: float) -> None:
    port = node.port  # type: ignore[attr-defined]
    server = node.scp._server  # type: ignore[attr-defined]
    total, generator = Outcomes(), Generator(seed)
    before, started = resident_bytes(), time.perf_counter()
    for first in range(0, cases, BATCH):
        batch = run(port, server, generator, min(BATCH, cases - first), hang_s, first=first)
        merge(total, batch)
        elapsed = time.perf_counter() - started
        print(f"{total.cases} cases in {elapsed:.0f}s: {dict(total.counts)}", flush=True)
    report(total, resident_bytes() - before, Address("127.0.0.1", port, "DICOMFLOW"))


def merge(total: Outcomes, batch: Outcomes) -> None:
    total.counts.update(batch.counts)
    total.statuses.update(batch.statuses)
    total.targets.update(batch.targets)
    total.exceptions += batch.exceptions
    total.hangs += batch.hangs


def report(total: Outcomes, grown: int, address: Address) -> None:
    print(f"cases: {total.cases}; mutated parts: {dict(total.targets)}")
    print(f"outcomes: {dict(total.counts)}")
    print(f"statuses received: {dict(total.statuses)}")
    print(f"hangs: {len(total.hangs)} {total.hangs[:10]}")
    kinds: Counter[str] = Counter()
    first: dict[str, str] = {}
    for text in total.exceptions:
        lines = text.strip().splitlines()
        kind = f"{lines[-1].split(':')[0]} at {next(reversed([x for x in lines if 'File' in x]))}"
        kinds[kind] += 1
        first.setdefault(kind, lines[0])
    print(f"exceptions escaping an association: {len(total.exceptions)}")
    for kind, count in kinds.most_common():
        print(f"  {count} x {kind.strip()} (first: {first[kind][:40]})")
    print(f"RSS growth: {grown / MIB:.0f} MiB")
    try:
        requestor.echo(address)
        print("C-ECHO afterwards: success")
    except Exception as exc:  # any failure is the finding
        print(f"C-ECHO afterwards: FAILED ({exc})")


if __name__ == "__main__":
    main()
