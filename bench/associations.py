"""The whole node receiving over several associations at once.

Starts a node on the embedded defaults whose pipeline never completes (as the
``node`` row of ``bench/ingest.py``), generates the instances, splits them over
N concurrent ``storescu`` processes and prints instances/s and MB/s for each N.
Concurrent associations share the journal's flush (group commit).

    .venv/bin/python bench/associations.py [--small 5000] [--large 1500] [--associations 1 2 4]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE / "pipelines"))

import argparse
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time

from spool_pipeline import SpoolOnlyPipeline


def load_generate():  # type: ignore[no-untyped-def]
    """``generate`` of bench/ingest.py (loaded by path: bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("bench_ingest", HERE / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


def measure(files: list[Path], associations: int, workdir: Path) -> tuple[float, float]:
    data = Path(tempfile.mkdtemp(prefix="node-", dir=workdir))
    pipeline = SpoolOnlyPipeline(
        start=False, port=0, data_directory=data, log_level="WARNING", web_enabled=False
    )
    pipeline.open(blocking=False, configure_logs=False)
    try:
        port = str(pipeline.node.port)
        chunks = [files[index::associations] for index in range(associations)]
        started = time.perf_counter()
        senders = [
            subprocess.Popen(
                ["storescu", "-aec", "DICOMFLOW", "127.0.0.1", port, *map(str, chunk)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for chunk in chunks
        ]
        if any(sender.wait() != 0 for sender in senders):
            raise SystemExit("a storescu run failed")
        seconds = time.perf_counter() - started
    finally:
        pipeline.close()  # its data stays until the end: on ext4 without a journal, files
        # created right after many were deleted cost much more (see bench/RESULTS.md)
    size = sum(os.path.getsize(path) for path in files)
    return len(files) / seconds, size / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=5000, help="64x64 instances")
    parser.add_argument("--large", type=int, default=1500, help="512x512 instances")
    parser.add_argument("--associations", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--workdir", help="where to put the temporary directory")
    args = parser.parse_args()
    generate = load_generate()
    workdir = Path(tempfile.mkdtemp(prefix="dicomflow-assoc-", dir=args.workdir))
    try:
        for label, count, size in (("small", args.small, 64), ("large", args.large, 512)):
            if not count:
                continue
            files = generate(workdir / label, count, size)
            for associations in args.associations:
                per_second, megabytes = measure(files, associations, workdir)
                print(
                    f"{label}: {count} instances over {associations} association(s):"
                    f" {per_second:.0f} inst/s, {megabytes:.0f} MB/s"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
