"""The COD archive against plain files: ingest, random reads, append cost.

1. Ingest a 300-instance 512x512 CT series into a local datastore (what one
   ``dicomflow cod ingest`` task does, plus one fsync of the tar and the
   metadata) vs copying the files (``shutil.copyfile`` + fsync per file):
   median of 3 rounds, alternating which of the two goes first (a virtual
   disk often takes the first ~150 MB written after a pause several times
   faster than the rest, which would favour whichever runs first).
2. Read 100 random instances back with ``CODObject.get`` (ranged read +
   crc32c check) vs reading the lone files.
3. Append 10 instances to a 1,000-instance 64x64 series: bytes added to the
   tar vs the 10 instances' total size.

    .venv/bin/python bench/cod.py [--no-record]
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard module: keep bench/ off sys.path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time

import pydicom

from dicomflow.cli.cod import ingest_series
from dicomflow.cod import CODObject
from dicomflow.dicom.factory import make_ct_series, write_series


def series_uids(path: Path) -> tuple[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_files(files: list[Path], target: Path) -> float:
    target.mkdir()
    start = time.perf_counter()
    for file in files:
        copy = target / file.name
        shutil.copyfile(file, copy)
        fsync(copy)
    return time.perf_counter() - start


def ingest(files: list[Path], datastore: Path) -> float:
    study, series = series_uids(files[0])
    start = time.perf_counter()
    report = ingest_series(str(datastore), study, series, [str(f) for f in files])
    folder = datastore / "studies" / study / "series"
    fsync(folder / f"{series}.tar")
    fsync(folder / series / "metadata.json")
    elapsed = time.perf_counter() - start
    if report.new != len(files) or report.errors:
        raise SystemExit(f"ingest failed: {report}")
    return elapsed


def ingest_and_copy(files: list[Path], work: Path, rounds: int = 3) -> tuple[float, float]:
    """Median seconds of an ingest and of a copy over ``rounds`` alternating rounds.

    Leaves the last ingest's datastore in ``work / "ds"``.
    """
    ingests: list[float] = []
    copies: list[float] = []
    for number in range(rounds):
        shutil.rmtree(work / "ds", ignore_errors=True)
        shutil.rmtree(work / "copy", ignore_errors=True)
        steps = [
            lambda: ingests.append(ingest(files, work / "ds")),
            lambda: copies.append(copy_files(files, work / "copy")),
        ]
        for step in steps[:: -1 if number % 2 else 1]:
            step()
    return statistics.median(ingests), statistics.median(copies)


def per_read(files: list[Path], datastore: Path, count: int) -> tuple[float, float]:
    """Median over 5 rounds of the mean time per read (archive, lone files)."""
    study, series = series_uids(files[0])
    cod = CODObject(str(datastore), study, series, lock=False)
    by_uid = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
    picks = random.Random(0).sample(sorted(by_uid), count)
    archive, plain = [], []
    for _ in range(5):
        start = time.perf_counter()
        for uid in picks:
            cod.get(uid)
        archive.append((time.perf_counter() - start) / count)
        start = time.perf_counter()
        for uid in picks:
            by_uid[uid].read_bytes()
        plain.append((time.perf_counter() - start) / count)
    return statistics.median(archive), statistics.median(plain)


def append_cost(work: Path) -> tuple[int, int]:
    datasets = make_ct_series(1010)
    files = write_series(datasets, work / "small")
    ingest(files[:1000], work / "ds-small")
    study, series = series_uids(files[0])
    tar = work / "ds-small" / "studies" / study / "series" / f"{series}.tar"
    before = tar.stat().st_size
    ingest_series(str(work / "ds-small"), study, series, [str(f) for f in files[1000:]])
    return tar.stat().st_size - before, sum(f.stat().st_size for f in files[1000:])


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} CPUs (nproc {subprocess.getoutput('nproc')}), {cpu}, "
        f"Linux {platform.release()}"
    )


def run() -> list[tuple[str, str, str, str]]:
    with tempfile.TemporaryDirectory(dir=HERE.parent) as folder:
        work = Path(folder)
        files = write_series(make_ct_series(300, rows=512, columns=512), work / "big")
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        ingest_s, copy_s = ingest_and_copy(files, work)
        archive_read, file_read = per_read(files, work / "ds", 100)
        added, instances = append_cost(work)
    cod_rate, copy_rate = size_mb / ingest_s, size_mb / copy_s
    return [
        (
            "ingest 300 x 512x512 (MB/s, median of 3)",
            f"{cod_rate:.0f}",
            f"{copy_rate:.0f} (copy+fsync)",
            f"{cod_rate / copy_rate:.2f}x (target >= 0.5x)",
        ),
        (
            "read 100 random (ms/read)",
            f"{archive_read * 1e3:.2f}",
            f"{file_read * 1e3:.2f}",
            f"{archive_read / file_read:.2f}x (target <= 1.5x)",
        ),
        (
            "append 10 to 1,000 x 64x64 (bytes)",
            f"{added:,} added to tar",
            f"{instances:,} instances",
            f"{added / instances:.2f}x",
        ),
    ]


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| measure | COD archive | plain files | ratio |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(lines)


def record(text: str) -> None:
    results = HERE / "RESULTS.md"
    content = results.read_text()
    if "\n# Archive\n" not in content:
        content = content.rstrip("\n") + "\n\n# Archive\n"
    content = content.rstrip("\n") + "\n\n" + text + "\n"
    results.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="Do not append to RESULTS.md.")
    args = parser.parse_args()
    rows = run()
    text = table(rows)
    print(text)
    if not args.no_record:
        stamp = time.strftime("%Y-%m-%d")
        record(f"{stamp}, {machine()}; `.venv/bin/python bench/cod.py`\n\n{text}")


if __name__ == "__main__":
    main()
