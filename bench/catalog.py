"""How fast does the archive answer queries, against Orthanc, at 1k, 10k and 100k series?

Usage::

    .venv/bin/python bench/catalog.py [--sizes 1000,10000,100000] [--repeat 20]
                                      [--budget 20] [--workdir /work/bench-catalog]
                                      [--no-cfind] [--prepare-only]

For each size N (a multiple of 1,000; default 1,000 and 10,000, 100,000 on request),
once and cached under ``--workdir`` (see ``bench/catalog_data.py``): N synthetic 64x64
MR instances, one per series, two series per study and three studies per patient; a
dicomflow archive of them made by ``dicomflow cod ingest`` (its process pool, which
records each series in the archive's catalog), then ``dicomflow cod reindex`` once (for
archives ingested before the catalog existed); an Orthanc 1.10 holding the same
instances, loaded by REST ``POST /instances`` from 4 threads. Each step prints how long
it took; ``--prepare-only`` stops there.

Then, on the warm machine (OS caches warm):

- QIDO-RS: ``dicomflow dashboard --archive`` started in a fresh process; the time from
  its start to the answer of its first QIDO, and of that request alone once the port
  listens; then per query, back to back with Orthanc, 3 warm-up requests and the median
  of ``--repeat`` (one request per connection, at most ``--budget`` seconds per query
  once 3 are timed): ``GET /dicomweb/studies?KEYS&limit=100`` against Orthanc's ``POST
  /tools/find`` (Level Study, the same keys, Limit 100, Expand true: what a QIDO answer
  carries); the dashboard's RSS (and peak) after the queries.
- C-FIND (unless ``--no-cfind``): the same keys at STUDY level (Study Root, 14 return
  keys) with dcmtk ``findscu`` (one process and association per query) against the
  node's SCP (``dicomflow serve --archive``) and Orthanc's, back to back; ``echoscu``
  against both shows the fixed cost in each row. C-FIND has no limit: its answers grow
  with the archive, so growth is a target only for a query answered as often at both
  sizes. The node's rows read "n/a" when it offers no Study Root C-FIND.
- The catalog's share of an archive job: ``archive_series`` (what the node's archive
  jobs run: append, sync, catalog, thumbnail) of 20 new 1-instance series into a copy of
  the largest size's catalog, with the time spent in the catalog (open, record, close).

The targets (PASS/FAIL): QIDO and C-FIND warm ≤ Orthanc on every query and size; growth
between the two largest sizes (10k -> 100k) ≤ 1.5x per query; the first QIDO after a
start ≤ 1 s at the largest size; the dashboard's RSS at the largest size ≤ 1.25x its RSS
at the smallest; the catalog ≤ 10 % of an archive job. The machine's load average is
printed with each size: on a shared machine the figures are indicative.
"""

# ruff: noqa: E402
import sys
from pathlib import Path

# bench/queue.py would shadow the standard queue module (which pynetdicom imports): load
# the standard one first, with bench/ off sys.path, then allow bench/.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
import queue  # noqa: F401

sys.path.insert(0, str(BENCH_DIR))

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from catalog_data import (
    REINDEXED,
    SERIES_PER_STUDY,
    STUDIES_PER_PATIENT,
    Orthanc,
    dicomflow,
    fill,
    free_port,
    ingest_archive,
    load_orthanc,
    make_instances,
    part10,
    patient,
    remove,
    running_orthanc,
    template,
    wait_for_port,
)

TOKEN = "bench-catalog-token"
LIMIT = 100
WARM_UP = 3


@dataclass(frozen=True)
class Query:
    """One study-level query: its label and keys (QIDO parameter = Orthanc/C-FIND value)."""

    label: str
    keys: dict[str, str]


ALL_STUDIES = "all studies, limit 100"


def queries(size: int) -> list[Query]:
    person = patient(size // SERIES_PER_STUDY // STUDIES_PER_PATIENT // 2)
    return [
        Query(ALL_STUDIES, {}),
        Query("PatientID exact", {"PatientID": person.patient_id}),
        Query("PatientName smi*", {"PatientName": "smi*"}),
        Query("StudyDate 2023 (range)", {"StudyDate": "20230101-20231231"}),
    ]


@dataclass
class Timing:
    """Median and range of the timed requests (seconds), and how many answers each got."""

    times: list[float]
    answers: int

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times) * 1000


@dataclass
class SizeResult:
    size: int
    load: str
    loading: dict[str, float] = field(default_factory=dict)
    qido: dict[str, Timing] = field(default_factory=dict)
    orthanc: dict[str, Timing] = field(default_factory=dict)
    matches: dict[str, int] = field(default_factory=dict)
    cfind_node: dict[str, Timing | None] = field(default_factory=dict)
    cfind_orthanc: dict[str, Timing] = field(default_factory=dict)
    first_from_spawn: float = 0.0
    first_request: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    orthanc_rss_mb: float = 0.0
    orthanc_first: float = 0.0
    node_rss_mb: float = 0.0
    echo_node: Timing | None = None
    echo_orthanc: Timing | None = None


def timed(call: Callable[[], int], repeat: int, budget_s: float) -> Timing:
    """Warm up, then time ``call`` ``repeat`` times within ``budget_s`` (at least 3 times,
    or once when one call takes over 2 s, as the C-FIND of every study at 100k does)."""
    started = time.perf_counter()
    answers = call()
    slow = time.perf_counter() - started > 2
    for _ in range(0 if slow else WARM_UP - 1):
        answers = call()
    least = 1 if slow else 3
    times: list[float] = []
    deadline = time.monotonic() + budget_s
    while len(times) < repeat and (len(times) < least or time.monotonic() < deadline):
        started = time.perf_counter()
        answers = call()
        times.append(time.perf_counter() - started)
    return Timing(times, answers)


def http_get(port: int, path: str, headers: dict[str, str]) -> bytes:
    """One GET on a new connection (as the issue measured); the body of a 200 answer."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status not in (200, 204):
        raise SystemExit(f"GET {path}: HTTP {response.status} {body[:300]!r}")
    return body


def qido_path(query: Query, limit: int | None = LIMIT) -> str:
    parameters = {**query.keys, **({"limit": str(limit)} if limit else {})}
    return "/dicomweb/studies?" + urllib.parse.urlencode(parameters)


def qido_call(port: int, query: Query) -> Callable[[], int]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/dicom+json"}

    def call() -> int:
        body = http_get(port, qido_path(query), headers)
        return len(json.loads(body)) if body else 0

    return call


def orthanc_body(query: Query, limit: int | None = LIMIT) -> bytes:
    find: dict[str, object] = {"Level": "Study", "Query": query.keys, "Expand": True}
    if limit:
        find["Limit"] = limit
    return json.dumps(find).encode()


def orthanc_call(orthanc: Orthanc, query: Query) -> Callable[[], int]:
    body = orthanc_body(query)
    return lambda: len(orthanc.request("POST", "/tools/find", body))


def rss_mb(pid: int) -> tuple[float, float]:
    """Resident and peak resident set of ``pid`` in MB (VmRSS, VmHWM)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (
        int(fields["VmRSS"].split()[0]) / 1024,
        int(fields["VmHWM"].split()[0]) / 1024,
    )


@dataclass
class Server:
    """A dicomflow process started by the benchmark and when it was started."""

    process: subprocess.Popen[bytes]
    started: float
    port: int


@contextmanager
def dicomflow_process(arguments: list[str], data: Path, port: int) -> Iterator[Server]:
    """``dicomflow ARGUMENTS`` with the benchmark's web token, stopped on exit."""
    data.mkdir(parents=True, exist_ok=True)
    log = (data / "bench.log").open("ab")
    environment = {**os.environ, "DICOMFLOW_WEB_TOKEN": TOKEN}
    command = [str(Path(sys.executable).with_name("dicomflow")), *arguments]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    try:
        yield Server(process, started, port)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def dashboard(datastore: Path, data: Path) -> AbstractContextManager[Server]:
    port = free_port()
    arguments = ["dashboard", "--archive", str(datastore), "--data-dir", str(data)]
    return dicomflow_process(
        [*arguments, "--web-ip", "127.0.0.1", "--web-port", str(port)], data, port
    )


def measure_web(
    result: SizeResult, orthanc: Orthanc, datastore: Path, work: Path, args: argparse.Namespace
) -> None:
    """The first QIDO after a start, then per query QIDO and Orthanc back to back."""
    with dashboard(datastore, work / "dashboard-data") as server:
        wait_for_port(server.port, 120)
        listening = time.perf_counter()
        qido_call(server.port, queries(result.size)[0])()
        answered = time.perf_counter()
        result.first_from_spawn = answered - server.started
        result.first_request = answered - listening
        for query in queries(result.size):
            everything = orthanc.request("POST", "/tools/find", orthanc_body(query, limit=None))
            result.matches[query.label] = len(everything)
            call = qido_call(server.port, query)
            result.qido[query.label] = timed(call, args.repeat, args.budget)
            call = orthanc_call(orthanc, query)
            result.orthanc[query.label] = timed(call, args.repeat, args.budget)
            same_answers(
                f"QIDO {query.label}", result.qido[query.label], result.orthanc[query.label]
            )
        result.rss_mb, result.peak_rss_mb = rss_mb(server.process.pid)
    result.orthanc_rss_mb = rss_mb(orthanc.process.pid)[0]


def measure_cfind(
    result: SizeResult, orthanc: Orthanc, datastore: Path, work: Path, args: argparse.Namespace
) -> None:
    """Per query: the node's C-FIND SCP (when it has one) and Orthanc's, back to back."""
    port = free_port()
    arguments = ["serve", "--archive", str(datastore), "--data-dir", str(work / "node-data")]
    arguments += ["--port", str(port), "--ip", "127.0.0.1", "--ae-title", "DICOMFLOW", "--no-web"]
    with dicomflow_process(arguments, work / "node-data", port) as node:
        wait_for_port(port, 120)
        result.echo_node = timed(echo_call(port, "DICOMFLOW"), args.repeat, 5)
        result.echo_orthanc = timed(echo_call(orthanc.dicom_port, orthanc.ae_title), args.repeat, 5)
        for query in queries(result.size):
            call = cfind_call(port, "DICOMFLOW", query)
            try:
                call()
                result.cfind_node[query.label] = timed(call, args.repeat, args.budget)
            except CFindUnsupported as exc:
                result.cfind_node[query.label] = None
                print(f"  node C-FIND {query.label}: {exc}", flush=True)
            call = cfind_call(orthanc.dicom_port, orthanc.ae_title, query)
            result.cfind_orthanc[query.label] = timed(call, args.repeat, args.budget)
            ours = result.cfind_node[query.label]
            if ours is not None:
                same_answers(f"C-FIND {query.label}", ours, result.cfind_orthanc[query.label])
        result.node_rss_mb = rss_mb(node.process.pid)[0]


def echo_call(port: int, ae_title: str) -> Callable[[], int]:
    """One ``echoscu`` run: the fixed cost (process, association) inside each C-FIND row."""
    command = ["echoscu", "-aet", "BENCH", "-aec", ae_title, "127.0.0.1", str(port)]
    return lambda: subprocess.run(command, capture_output=True, check=True).returncode


def same_answers(what: str, ours: Timing, theirs: Timing) -> None:
    """Warn when the two sides did not answer with as many matches."""
    if ours.answers != theirs.answers:
        print(f"  warning: {what}: {ours.answers} answers, Orthanc {theirs.answers}", flush=True)


class CFindUnsupported(Exception):
    """The peer refused the association or Study Root C-FIND, or ended it with a failure."""


STUDY_RETURN_KEYS = [
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "StudyDescription", "ReferringPhysicianName", "PatientName", "PatientID",
    "PatientBirthDate", "PatientSex", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]  # fmt: skip


def findscu_command(port: int, ae_title: str, keys: dict[str, str]) -> list[str]:
    """dcmtk ``findscu`` at STUDY level (Study Root) with ``keys`` and the return keys."""
    command = ["findscu", "-S", "-aet", "BENCH", "-aec", ae_title, "-k", "QueryRetrieveLevel=STUDY"]
    for keyword in STUDY_RETURN_KEYS:
        command += ["-k", f"{keyword}={keys[keyword]}" if keyword in keys else keyword]
    return [*command, "127.0.0.1", str(port)]


def cfind_call(port: int, ae_title: str, query: Query) -> Callable[[], int]:
    """One ``findscu`` run (one association, one C-FIND); the number of matches."""
    command = findscu_command(port, ae_title, query.keys)

    def call() -> int:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CFindUnsupported(result.stderr.strip().splitlines()[-1:])
        return result.stderr.count("(Pending)")

    return call


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def prepare(size: int, work: Path, instances: Path) -> dict[str, float]:
    """The cached data of one size; seconds per step that had to run (0: cached)."""
    loading = {"generate instances": make_instances(instances, size)}
    datastore = work / f"archive-{size}"
    loading["dicomflow cod ingest"] = ingest_archive(instances, size, datastore)
    reindex = build_catalog(datastore)
    if reindex is not None:
        loading["dicomflow cod reindex"] = reindex
    with running_orthanc(work / f"orthanc-{size}") as orthanc:
        loading["Orthanc POST /instances"] = load_orthanc(orthanc, instances, size)
    return loading


def build_catalog(datastore: Path) -> float | None:
    """``dicomflow cod reindex`` of the archive, once, where the command exists; seconds."""
    marker = datastore / REINDEXED
    if marker.exists():
        return 0.0
    probe = [str(Path(sys.executable).with_name("dicomflow")), "cod", "reindex", "--help"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        return None
    started = time.perf_counter()
    dicomflow(["cod", "reindex", str(datastore)])
    seconds = time.perf_counter() - started
    marker.touch()
    return seconds


def run_size(size: int, work: Path, args: argparse.Namespace) -> SizeResult:
    result = SizeResult(size, load_average())
    result.loading = prepare(size, work, work / "instances")
    datastore = work / f"archive-{size}"
    with running_orthanc(work / f"orthanc-{size}") as orthanc:
        result.orthanc_first = orthanc_first_find(orthanc, queries(size)[0])
        measure_web(result, orthanc, datastore, work, args)
        if args.cfind:
            measure_cfind(result, orthanc, datastore, work, args)
    result.load += f" -> {load_average()}"
    return result


def orthanc_first_find(orthanc: Orthanc, query: Query) -> float:
    """Seconds from Orthanc's start to the answer of its first /tools/find."""
    orthanc.request("POST", "/tools/find", orthanc_body(query))
    return time.perf_counter() - orthanc.started


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def ratio_cell(ours: Timing | None, theirs: Timing) -> tuple[str, str, str]:
    """Our median, the ratio to theirs and the verdict (ours ≤ theirs)."""
    if ours is None:
        return "n/a", "", "n/a"
    ratio = ours.median_ms / theirs.median_ms
    return f"{ours.median_ms:.1f}", f"{ratio:.2f}", verdict(ratio <= 1)


def comparison(
    result: SizeResult, ours: dict[str, Timing | None], theirs: dict[str, Timing], names: str
) -> list[str]:
    lines = [
        f"| query (study level) | matches | {names} | ratio | ≤ Orthanc |",
        "|---|---:|---:|---:|---:|---|",
    ]
    studies = result.size // SERIES_PER_STUDY
    for label, reference in theirs.items():
        matches = result.matches.get(label, 0)
        share = f"{matches:,} ({100 * matches / studies:.1f} %)"
        mine, ratio, passed = ratio_cell(ours.get(label), reference)
        lines.append(
            f"| {label} | {share} | {mine} | {reference.median_ms:.1f} | {ratio} | {passed} |"
        )
    return lines


def size_report(result: SizeResult) -> str:
    studies = result.size // SERIES_PER_STUDY
    patients = studies // STUDIES_PER_PATIENT
    ran = [f"{step} {seconds:.1f} s" for step, seconds in result.loading.items() if seconds]
    lines = [
        f"### {result.size:,} series ({studies:,} studies, {patients:,} patients)",
        "",
        f"load average (1/5/15 min) before -> after: {result.load}",
        f"loading: {', '.join(ran) or 'all cached'}",
        "",
        *comparison(
            result,
            dict(result.qido),
            result.orthanc,
            "dicomflow QIDO-RS ms | Orthanc /tools/find ms",
        ),
    ]
    if result.cfind_orthanc:
        lines += [
            "",
            *comparison(
                result,
                result.cfind_node,
                result.cfind_orthanc,
                "node C-FIND ms | Orthanc C-FIND ms",
            ),
        ]
    if result.echo_node and result.echo_orthanc:
        lines += [
            "",
            f"C-ECHO with echoscu (the process and association in each C-FIND row): node "
            f"{result.echo_node.median_ms:.1f} ms, Orthanc {result.echo_orthanc.median_ms:.1f} ms",
        ]
    lines += [
        "",
        f"first QIDO after a start: {result.first_from_spawn:.2f} s from the process start, "
        f"{result.first_request * 1000:.0f} ms once listening "
        f"(Orthanc: {result.orthanc_first:.2f} s from its start to its first /tools/find)",
        f"dashboard RSS after the queries: {result.rss_mb:.0f} MB "
        f"(peak {result.peak_rss_mb:.0f} MB); "
        + (f"node after its C-FINDs: {result.node_rss_mb:.0f} MB; " if result.node_rss_mb else "")
        + f"Orthanc: {result.orthanc_rss_mb:.0f} MB",
    ]
    return "\n".join(lines)


def growth_rows(results: list[SizeResult], kind: str) -> tuple[list[str], list[bool]]:
    """Per query: the median at each size and the growth between the two largest: a
    target where both sizes gave as many answers (QIDO's limit 100, one patient's studies),
    not for a C-FIND whose answer grows with the archive."""
    rows, verdicts = [], []
    for label in results[0].orthanc:
        cells = [(r.qido if kind == "QIDO-RS" else r.cfind_node).get(label) for r in results]
        medians = [f"{cell.median_ms:.1f}" if cell else "n/a" for cell in cells]
        growth, passed = "", None
        if len(cells) > 1 and cells[-1] and cells[-2]:
            value = cells[-1].median_ms / cells[-2].median_ms
            growth = f"{value:.2f}x"
            if cells[-1].answers == cells[-2].answers:
                passed = value <= 1.5
                verdicts.append(passed)
            else:
                growth += f" ({cells[-2].answers:,} -> {cells[-1].answers:,} answers)"
        rows.append(f"| {kind} {label} | {' | '.join(medians)} | {growth} | {verdict(passed)} |")
    return rows, verdicts


def worst_ratio(results: list[SizeResult], dimse: bool) -> float | None:
    """The largest ours/Orthanc ratio over every query and size (None: nothing of ours)."""
    ratios = [
        ours.median_ms / (r.cfind_orthanc if dimse else r.orthanc)[label].median_ms
        for r in results
        for label, ours in (r.cfind_node if dimse else dict(r.qido)).items()
        if ours is not None
    ]
    return max(ratios) if ratios else None


def target_row(name: str, figure: str, passed: bool | None) -> str:
    return f"| {name} | {figure} | {verdict(passed)} |"


def ratio_target(name: str, worst: float | None) -> str:
    if worst is None:
        return target_row(name, "not measured (--no-cfind, or the node has no SCP)", None)
    return target_row(name, f"worst ratio {worst:.2f}", worst <= 1)


def targets(results: list[SizeResult], growth: list[bool], share: float | None) -> list[str]:
    smallest, largest = results[0], results[-1]
    memory = largest.rss_mb / smallest.rss_mb
    first = f"{largest.first_request * 1000:.0f} ms ({largest.first_from_spawn:.2f} s from spawn)"
    several = len(results) > 1
    span = f"{results[-2].size:,} -> {largest.size:,}" if several else "one size"
    return [
        "| target | figure | verdict |",
        "|---|---|---|",
        ratio_target("QIDO-RS warm ≤ Orthanc, every query and size", worst_ratio(results, False)),
        ratio_target("C-FIND warm ≤ Orthanc, every query and size", worst_ratio(results, True)),
        target_row(
            f"growth ≤ 1.5x per query ({span})",
            f"{sum(growth)} of {len(growth)} queries",
            all(growth) if growth else None,
        ),
        target_row(
            f"first QIDO after a start ≤ 1 s at {largest.size:,}", first, largest.first_request <= 1
        ),
        target_row(
            "dashboard RSS independent of the size (≤ 1.25x)",
            f"{smallest.rss_mb:.0f} MB at {smallest.size:,}, {largest.rss_mb:.0f} MB at "
            f"{largest.size:,} ({memory:.2f}x)",
            memory <= 1.25 if several else None,
        ),
        target_row(
            "catalog update ≤ 10 % of an archive sync",
            f"{share:.1f} %" if share is not None else "no catalog",
            share <= 10 if share is not None else None,
        ),
    ]


def summary(results: list[SizeResult], share: float | None) -> str:
    sizes = " | ".join(f"{r.size:,} ms" for r in results)
    rows, growth = growth_rows(results, "QIDO-RS")
    if any(results[-1].cfind_node.values()):
        more, more_growth = growth_rows(results, "C-FIND")
        rows, growth = rows + more, growth + more_growth
    header = [f"| query | {sizes} | growth (last two) | ≤ 1.5x |"]
    header.append("|---|" + "---:|" * len(results) + "---:|---|")
    return "\n".join([*header, *rows, "", *targets(results, growth, share)])


class CatalogClock:
    """Wraps ``open_catalog``: the seconds spent opening catalogs and in each of their
    methods (record, close)."""

    def __init__(self, open_catalog: Callable[[str], Any]) -> None:
        self.seconds: dict[str, float] = {"open": 0.0}
        self._open = open_catalog

    def open(self, location: str) -> Any:
        started = time.perf_counter()
        try:
            return TimedCatalog(self._open(location), self)
        finally:
            self.add("open", started)

    def add(self, name: str, started: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started


class TimedCatalog:
    def __init__(self, inner: Any, clock: CatalogClock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._clock.add(name, started)

        return timed_call


@dataclass
class SyncShare:
    """Milliseconds per archive job, and in the catalog per step (open, record, close)."""

    syncs: int
    sync_ms: float
    catalog_ms: dict[str, float]

    @property
    def percent(self) -> float:
        return 100 * sum(self.catalog_ms.values()) / self.sync_ms

    def __str__(self) -> str:
        steps = ", ".join(f"{name} {ms:.1f}" for name, ms in self.catalog_ms.items())
        return (
            f"{self.sync_ms:.1f} ms per job, {sum(self.catalog_ms.values()):.1f} ms of it in "
            f"the catalog ({steps}): {self.percent:.1f} %"
        )


def catalog_share(work: Path, size: int, count: int = 20) -> SyncShare | None:
    """``archive_series`` of ``count`` new 1-instance series into a copy of the catalog of
    the ``size`` archive: the time in the catalog (open, record, close) against the whole
    job (append, sync, catalog, thumbnail). None before the catalog exists."""
    from dicomflow.engine import series_archive

    if not hasattr(series_archive, "open_catalog"):
        return None
    probe = work / "sync-probe"
    remove(probe)
    (probe / "archive").mkdir(parents=True)
    for name in ("catalog.sqlite", "catalog.sqlite-wal"):
        if (work / f"archive-{size}" / name).exists():
            shutil.copyfile(work / f"archive-{size}" / name, probe / "archive" / name)
    clock = CatalogClock(series_archive.open_catalog)
    series_archive.open_catalog = clock.open
    ds, total = template(), 0.0
    for number in range(count):
        folder = probe / f"in-{number}"
        folder.mkdir()
        fill(ds, 10**8 + number)
        (folder / "instance.dcm").write_bytes(part10(ds))
        started = time.perf_counter()
        series_archive.archive_series(str(folder), str(probe / "archive"))
        total += time.perf_counter() - started
    per_job = {name: 1000 * seconds / count for name, seconds in clock.seconds.items()}
    return SyncShare(count, 1000 * total / count, per_job)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="series per archive (1000,10000)")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per query (20)")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per query at most")
    parser.add_argument("--workdir", type=Path, default=Path("/work/bench-catalog"))
    parser.add_argument("--no-cfind", dest="cfind", action="store_false", help="skip C-FIND")
    parser.add_argument(
        "--prepare-only", action="store_true", help="make the cached data of each size, then stop"
    )
    args = parser.parse_args()
    args.sizes = sorted(int(size) for size in args.sizes.split(","))
    if any(size <= 0 or size % 1000 for size in args.sizes):
        parser.error("--sizes: positive multiples of 1000")
    return args


def main() -> None:
    args = parse_arguments()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, load {load_average()}")
    if args.prepare_only:
        for size in args.sizes:
            loading = prepare(size, args.workdir, args.workdir / "instances")
            steps = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in loading.items())
            print(f"{size:,} series: {steps} (0: cached); load {load_average()}", flush=True)
        return
    results = []
    for size in args.sizes:
        results.append(run_size(size, args.workdir, args))
        print(size_report(results[-1]) + "\n", flush=True)
    share = catalog_share(args.workdir, args.sizes[-1])
    if share is not None:
        print(
            f"archive_series of {share.syncs} new 1-instance series beside {args.sizes[-1]:,}: "
            f"{share}\n"
        )
    print(summary(results, share.percent if share else None))


if __name__ == "__main__":
    main()
