"""Queue throughput: trivial jobs and three-job chains, each backend, beside plain RQ.

Usage::

    .venv/bin/python bench/queue.py [--jobs 10000] [--chains 1000] [--workers 2]
                                    [--scale 1.0] [--systems embedded dicomflow-rq rq]

The defaults take about five minutes on the project's 2-core machine, most of
it plain RQ's forking worker (about 60 jobs/s); ``--workers 1 2 --systems
embedded dicomflow-rq rq rq-simple`` runs the full comparison (about 15).

For each system and number of workers it enqueues ``--jobs`` trivial jobs (the
job is ``os.getpid``), then, separately, ``--chains`` chains of three jobs
(b depends on a, c on b), then starts the workers in burst mode and times
them from start to exit (a worker's start-up, about 0.3 s, included):

- ``embedded``: dicomflow, SQLite backend, ``python -m dicomflow.queue``;
- ``dicomflow-rq``: dicomflow, RQ backend, same command, on a local redis-server;
- ``rq``: plain RQ doing the same work in the same run: ``rq.Queue.enqueue``
  and ``rq.Worker`` (a forked work horse per job, RQ's default, so each job
  runs in its own process, as with dicomflow);
- ``rq-simple``: plain RQ with ``rq.SimpleWorker`` (jobs run inside the
  worker, no process per job), for reference.

It prints jobs/s (enqueue and processing) and the ratio of dicomflow-RQ's
processing rate to plain RQ's. Worker logs are at WARNING. ``--scale`` scales
both counts (e.g. 0.1 for a quick run).

STRANDED: with two workers, RQ 3.0 leaves some dependants behind: in its
ReadyJobRegistry (a transaction lost to the other worker's), to be queued by
the next maintenance ten minutes later, or queued after both burst workers
had stopped. dicomflow's worker queues ready dependants before each dequeue;
for plain RQ this script queues them (``ReadyJobRegistry.cleanup()``) and
runs the burst workers again until all jobs finished, the extra time counted.
"""

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
# This file is named queue.py: it must not shadow the standard library's ``queue``.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import rq  # noqa: E402
from redis import Redis  # noqa: E402

from dicomflow.queue import Job, JobStatus, open_backend  # noqa: E402
from dicomflow.queue.rq.mapping import QUEUE_NAMES  # noqa: E402

TRIVIAL = "os:getpid"
PLAIN_QUEUE = "bench-plain"
PLAIN_WORKER = """
import sys
from redis import Redis
from rq import SimpleWorker, Worker
worker_class = SimpleWorker if sys.argv[2] == "simple" else Worker
worker = worker_class([sys.argv[3]], connection=Redis.from_url(sys.argv[1]))
worker.work(burst=True, logging_level="WARNING")
"""


@dataclass
class Run:
    system: str
    workers: int
    kind: str
    jobs: int
    enqueue_s: float
    process_s: float

    @property
    def rate(self) -> float:
        return self.jobs / self.process_s


def main() -> None:
    arguments = parse_args()
    jobs = max(1, round(arguments.jobs * arguments.scale))
    chains = max(1, round(arguments.chains * arguments.scale))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as directory, redis_server(Path(directory)) as redis_url:
        for system in arguments.systems:
            for workers in arguments.workers:
                for kind, count in (("trivial", jobs), ("chains", chains)):
                    run = measure(system, kind, count, workers, redis_url, Path(directory))
                    print(format_run(run), flush=True)
                    runs.append(run)
    print()
    print(machine())
    print()
    print(markdown(runs))


def measure(system: str, kind: str, count: int, workers: int, redis_url: str, root: Path) -> Run:
    Redis.from_url(redis_url).flushall()
    if system in ("rq", "rq-simple"):
        return measure_plain(system, kind, count, workers, redis_url)
    if system == "embedded":
        url = f"sqlite:///{root}/{kind}-{workers}-{time.time_ns()}.db"
    else:
        url = redis_url
    return measure_dicomflow(system, url, kind, count, workers)


def measure_dicomflow(system: str, url: str, kind: str, count: int, workers: int) -> Run:
    backend = open_backend(url)
    started = time.perf_counter()
    backend.enqueue_many(dicomflow_jobs(kind, count))
    enqueued = time.perf_counter()
    total = count * (3 if kind == "chains" else 1)
    command = [sys.executable, "-m", "dicomflow.queue", url, "--burst", "--log-level", "WARNING"]
    process_s = run_workers(command, workers)
    finished = len(backend.jobs(JobStatus.FINISHED, limit=total + 1))
    backend.close()
    check(system, finished, total)
    return Run(system, workers, kind, total, enqueued - started, process_s)


def dicomflow_jobs(kind: str, count: int) -> Iterator[Job]:
    for _ in range(count):
        first = Job(TRIVIAL)
        yield first
        if kind == "chains":
            second = Job(TRIVIAL, depends_on=[first.id])
            yield second
            yield Job(TRIVIAL, depends_on=[second.id])


def measure_plain(system: str, kind: str, count: int, workers: int, redis_url: str) -> Run:
    connection = Redis.from_url(redis_url)
    queue = rq.Queue(PLAIN_QUEUE, connection=connection)
    started = time.perf_counter()
    for _ in range(count):
        first = queue.enqueue(os.getpid)
        if kind == "chains":
            second = queue.enqueue(os.getpid, depends_on=first)
            queue.enqueue(os.getpid, depends_on=second)
    enqueued = time.perf_counter()
    total = count * (3 if kind == "chains" else 1)
    flavour = "simple" if system == "rq-simple" else "fork"
    command = [sys.executable, "-c", PLAIN_WORKER, redis_url, flavour, PLAIN_QUEUE]
    process_s = run_workers(command, workers)
    for _ in range(5):  # see STRANDED
        if connection.zcard(queue.finished_job_registry.key) == total:
            break
        queue.ready_job_registry.cleanup()
        process_s += run_workers(command, workers)
    check(system, connection.zcard(queue.finished_job_registry.key), total)
    return Run(system, workers, kind, total, enqueued - started, process_s)


def run_workers(command: list[str], workers: int) -> float:
    started = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(workers)]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a worker failed: {' '.join(command)}")
    return time.perf_counter() - started


def check(system: str, finished: int, expected: int) -> None:
    if finished != expected:
        raise SystemExit(f"{system}: {finished} of {expected} jobs finished")


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is missing; `make bootstrap` installs it")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(directory)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for_redis(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for_redis(url: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            Redis.from_url(url).ping()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def format_run(run: Run) -> str:
    return (
        f"{run.system:13} {run.workers} worker(s) {run.kind:8} {run.jobs:6} jobs:"
        f" enqueue {run.jobs / run.enqueue_s:8.0f} jobs/s,"
        f" processing {run.rate:6.0f} jobs/s ({run.process_s:.1f} s)"
    )


def markdown(runs: list[Run]) -> str:
    rows = ["| system | workers | jobs | enqueue jobs/s | processing jobs/s | time (s) |"]
    rows.append("|---|---|---|---|---|---|")
    for run in runs:
        rows.append(
            f"| {run.system} | {run.workers} | {run.jobs} {run.kind} |"
            f" {run.jobs / run.enqueue_s:.0f} | {run.rate:.0f} | {run.process_s:.1f} |"
        )
    rows += ["", "| workers | jobs | dicomflow-RQ / plain RQ (jobs/s) |", "|---|---|---|"]
    by_key = {(run.system, run.workers, run.kind): run for run in runs}
    for (system, workers, kind), run in by_key.items():
        plain = by_key.get(("rq", workers, kind))
        if system == "dicomflow-rq" and plain is not None:
            rows.append(f"| {workers} | {run.jobs} {kind} | {run.rate / plain.rate:.2f} |")
    return "\n".join(rows)


def machine() -> str:
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2]
    return (
        f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()},"
        f" rq {rq.__version__}, redis-server {redis_version.removeprefix('v=')},"
        f" dicomflow RQ queues {', '.join(QUEUE_NAMES.values())}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="trivial jobs per run")
    parser.add_argument("--chains", type=int, default=1_000, help="three-job chains per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply both counts")
    parser.add_argument(
        "--systems",
        nargs="+",
        default=["embedded", "dicomflow-rq", "rq"],
        choices=["embedded", "dicomflow-rq", "rq", "rq-simple"],
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
