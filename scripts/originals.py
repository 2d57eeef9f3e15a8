"""Measure how much of the three original systems runs on dicomflow unchanged.

Run by hand (the mirrors are not in CI)::

    .venv/bin/python scripts/originals.py            # every section
    .venv/bin/python scripts/originals.py --only examples --only cod

Each original is exported with ``git archive`` into a temporary folder (the
mirrors are only read), its import root is rewritten (``dicomnode`` ->
``dicomflow``, ``cloud_optimized_dicom`` -> ``dicomflow.cod``) and then:

- **examples**: each of DicomNode's ``examples/*.py`` is imported, its pipeline
  (or, for an input-only example, a one-input pipeline around it) started with
  ``dicomflow serve`` on a free port, a synthetic CT series sent with dcmtk
  ``storescu``, and the node's log watched for the round's outcome. Each
  example is also checked against the original's own tree (do its imports exist
  there?).
- **tests**: DicomNode's public-API test modules (list in ``DICOMNODE_TESTS``),
  run with pytest against dicomflow.
- **cod**: cloud_optimized_dicom's tests at the commit whose README is seed 003;
  modules that need a real GCS bucket are counted apart.
- **services**: every dcm-processor service folder (the mirror and the fork),
  installed with ``dicomflow service install`` into a temporary registry.
"""

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

MIRRORS = Path("/work/.mirror")
DICOMNODE = MIRRORS / "Rigshospitalet-KFNM+DicomNode/repo"
COD = MIRRORS / "gradienthealth+cloud_optimized_dicom/repo"
DCM_PROCESSOR = MIRRORS / "giesekow+dcm-processor/repo"
DCM_PROCESSOR_FORK = MIRRORS / "yjsyyyjszf+dcm-processor/repo"
SEED_README = Path("/work/shared/seeds/003_f698462057103540.txt")
BIN = Path(sys.executable).parent
DICOMFLOW = str(BIN / "dicomflow")
SECTIONS = ("examples", "tests", "cod", "services")

# DicomNode's test modules that exercise the public pipeline API. Left out: math_/
# (GPU, CUDA and C++ extensions), tests_report*.py (LaTeX reports), helpers/.
DICOMNODE_TESTS = (
    "tests/datastructures/tests_defaulting_dict.py",
    "tests/datastructures/tests_optional.py",
    "tests/dicom/tests_dicom_factory.py",
    "tests/dicom/tests_nifti.py",
    "tests/dicom/tests_rt_struct.py",
    "tests/dicom/tests_series.py",
    "tests/lib/tests_config_parser.py",
    "tests/lib/tests_logging.py",
    "tests/lib/tests_parallism.py",
    "tests/lib/tests_validators.py",
    "tests/server/tests_input.py",
    "tests/server/tests_input_container.py",
    "tests/server/tests_maintenance.py",
    "tests/server/tests_nodes.py",
    "tests/server/tests_nodes_abstract_queued_pipeline.py",
    "tests/server/tests_patient_node.py",
    "tests/server/tests_pipeline_storage.py",
    "tests/server/tests_processing.py",
    "tests/tests_circular_imports.py",
    "tests/tests_data_structures_image_tree.py",
    "tests/tests_dicom.py",
    "tests/tests_dicom_anonymization.py",
    "tests/tests_dicom_dicom_factory.py",
    "tests/tests_dicom_dimse.py",
    "tests/tests_dicom_lazy_dataset.py",
    "tests/tests_end2end/tests_concurency.py",
    "tests/tests_end2end/tests_file_node.py",
    "tests/tests_end2end/tests_historic_node.py",
    "tests/tests_end2end/tests_log_from_another_process.py",
    "tests/tests_end2end/tests_logging_doesnt_get_cleared.py",
    "tests/tests_end2end/tests_nifti_node.py",
    "tests/tests_end2end/tests_nodes_rejection.py",
    "tests/tests_end2end/tests_signal_kills_childern.py",
    "tests/tests_end2end/tests_thread_clean_up.py",
    "tests/tests_init.py",
    "tests/tests_lib_io.py",
    "tests/tests_lib_regex.py",
    "tests/tests_lib_utils.py",
    "tests/tests_server_grinders.py",
    "tests/tests_server_output.py",
)
# Scaffolding edits in the exported copy's package files (``tests/**/__init__.py``), after
# the import root is rewritten: they import every test module (so one module that cannot be
# imported stops the whole suite) and the GPU/math package, which is left out on purpose.
AGGREGATOR = re.compile(r"^from (tests(?:\.\w+)*|\.) import (\w+)\s*$", re.MULTILINE)
MATH_IMPORT = re.compile(r"^from dicomflow\.math\S* import (.+)$", re.MULTILINE)


def _lazy_math(match: re.Match[str]) -> str:
    names = [name.strip() for name in match.group(1).split(",")]
    fallback = "".join(f"  {name} = None\n" for name in names)
    return f"try:\n  {match.group(0)}\nexcept ImportError:\n{fallback}"


def scaffold(tests: Path) -> None:
    """Let each test module be collected on its own (see the comment above)."""
    for package in tests.rglob("__init__.py"):

        def submodule_only(match: re.Match[str], folder: Path = package.parent) -> str:
            parent = (
                folder
                if match.group(1) == "."
                else tests.parent.joinpath(*match.group(1).split("."))
            )
            name = match.group(2)
            is_submodule = (parent / f"{name}.py").is_file() or (parent / name).is_dir()
            return "" if is_submodule else match.group(0)

        text = AGGREGATOR.sub(submodule_only, package.read_text(errors="replace"))
        package.write_text(MATH_IMPORT.sub(_lazy_math, text))


GCS_MARKER = re.compile(r"^\s*(from|import) google\.cloud", re.MULTILINE)  # a real bucket
# Where the examples write, and the RT service one of them sends to.
EXAMPLE_ENV = {
    "STORENODE_ARCHIVE_PATH": "archive",
    "AVERAGE_NODE_OUTPUT_PATH": "average",
}
SERIES_LENGTH = 151  # plusOneNode waits for more than 150 images
ROUND_TIMEOUT_S = 60.0
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Row:
    """One measured item: its section, name, outcome and the detail behind it."""

    section: str
    item: str
    outcome: str
    detail: str = ""


# -- exporting and rewriting -------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def export(repo: Path, commit: str, destination: Path) -> Path:
    """Write the tree of ``commit`` into ``destination`` (``git archive``; repo untouched)."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", commit], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    return destination


def rewrite_imports(files: Iterable[Path], renames: list[tuple[str, str]]) -> None:
    """Replace each old import root by the new one in Python source (not in file paths)."""
    for path in files:
        text = path.read_text(errors="replace")
        for old, new in renames:
            text = re.sub(rf"\b{re.escape(old)}\b(?!/)", new, text)
        path.write_text(text)


def cod_commit(repo: Path, seed: Path) -> str:
    """The newest commit whose README.md equals the seed text (else the closest one)."""
    wanted = seed.read_text().strip().splitlines()
    best: tuple[int, str] | None = None
    for commit in git(repo, "log", "--format=%H", "--", "README.md").split():
        try:
            readme = git(repo, "show", f"{commit}:README.md").strip().splitlines()
        except subprocess.CalledProcessError:
            continue
        distance = len(set(readme) ^ set(wanted)) + abs(len(readme) - len(wanted))
        if best is None or distance < best[0]:
            best = (distance, commit)
        if distance == 0:
            break
    if best is None:
        raise SystemExit(f"{repo}: no commit has a README.md")
    return best[1]


# -- small process helpers -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def last_line(text: str, pattern: str = r"Error|error|Exception") -> str:
    """The last line of ``text`` matching ``pattern`` (else its last line), shortened."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    matching = [line for line in lines if re.search(pattern, line)]
    chosen = (matching or lines or [""])[-1]
    return chosen[:220]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    return {**base, "DICOMFLOW_SPOOL_JOURNAL_SEGMENT_BYTES": str(16 * 1024 * 1024), **extra}


# -- DicomNode's examples ------------------------------------------------------------------

PROBE = r"""
import importlib.util, inspect, json, sys
from pathlib import Path
path = Path(sys.argv[1])
sys.path.insert(0, str(path.parent))
try:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
except BaseException as exc:
    missing = getattr(exc, "name", None)
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}", "missing": missing}))
    raise SystemExit(0)
from dicomflow.node import AbstractInput, AbstractPipeline
def own(base):
    return [
        name for name, value in vars(module).items()
        if inspect.isclass(value) and issubclass(value, base) and value.__module__ == path.stem
    ]
pipelines = own(AbstractPipeline)
print(json.dumps({"pipelines": pipelines, "inputs": own(AbstractInput),
  "ae_titles": {n: getattr(module, n).ae_title for n in pipelines}}))
"""

WRAPPER = '''"""A one-input pipeline around an input-only example."""
import logging
from {module} import {input_class}
from dicomflow.node import AbstractPipeline, AbstractProcessor, NoOutput


class HarnessPipeline(AbstractPipeline):
    ae_title = "HARNESS"
    input = {{"input": {input_class}}}

    class Processor(AbstractProcessor):
        def process(self, input_container):
            logging.getLogger("harness").info("harness: process() ran")
            return NoOutput()
'''


def defined_names(module_file: Path) -> set[str]:
    """Names a module binds at its top level (definitions, assignments, imports)."""
    tree = ast.parse(module_file.read_text(errors="replace"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_file(source_root: Path, module: str) -> Path | None:
    base = source_root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def missing_in_original(example: Path, source_root: Path, root: str) -> list[str]:
    """``module`` or ``module.name`` imported by ``example`` that the original tree lacks."""
    missing: list[str] = []
    for node in ast.walk(ast.parse(example.read_text(errors="replace"))):
        if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith(root)):
            continue
        module = str(node.module)
        found = module_file(source_root, module)
        if found is None:
            missing.append(module)
            continue
        names = defined_names(found)
        submodules = (
            {p.stem for p in found.parent.iterdir()} if found.name == "__init__.py" else set()
        )
        missing += [f"{module}.{a.name}" for a in node.names if a.name not in names | submodules]
    return missing


def original_verdict(example: Path, source_root: Path) -> str:
    """How the example fares in the original's own tree: missing names, "borked" notes."""
    notes = []
    missing = missing_in_original(example, source_root, "dicomnode")
    if missing:
        notes.append("imports missing upstream: " + ", ".join(missing))
    if "borked" in example.read_text(errors="replace").lower():
        notes.append('marked "borked" by its authors')
    attribute_gaps = [m for m in ("AbstractInput.Options",) if m in example.read_text()]
    if attribute_gaps and "Options" not in defined_names_in_class(source_root):
        notes.append("uses AbstractInput.Options, which the original no longer has")
    return "; ".join(notes)


def defined_names_in_class(source_root: Path) -> set[str]:
    path = source_root / "dicomnode/server/input.py"
    tree = ast.parse(path.read_text(errors="replace"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "AbstractInput":
            return {n.name for n in node.body if isinstance(n, ast.ClassDef)}
    return set()


def probe(example: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(example)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env({}),
    )
    try:
        parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": last_line(result.stderr)}
    return parsed


def synthetic_series(folder: Path) -> list[Path]:
    """A CT series long enough for every example's validate(), numbered from 0."""
    from dicomflow.dicom.factory import make_ct_series, write_series

    datasets = make_ct_series(SERIES_LENGTH, rows=16, columns=16, patient_id="HARNESS1")
    for index, dataset in enumerate(datasets):
        dataset.InstanceNumber = index
        dataset.AcquisitionDate = "20240101"
        dataset.AcquisitionTime = f"12{index // 60:02d}{index % 60:02d}.000000"
        dataset.SeriesTime = "120000.000000"
        dataset.PatientPosition = "HFS"  # required by the general series blueprint
    return write_series(datasets, folder)


def run_example(spec: str, ae_title: str, series: list[Path], work: Path) -> Row:
    """Start ``spec`` with ``dicomflow serve``, send ``series``, read the round's outcome."""
    name = Path(spec.split(":")[0]).name
    port, log = free_port(), work / "node.log"
    scp_folder, scp_port = work / "rt-service", free_port()
    scp_folder.mkdir(parents=True, exist_ok=True)
    env = {key: str(work / value) for key, value in EXAMPLE_ENV.items()}
    env |= {"PIPELINE_RT_ADDRESS": "127.0.0.1", "PIPELINE_RT_PORT": str(scp_port)}
    env |= {"PIPELINE_RT_AE_TITLE": "RTSERVICE"}
    for key in EXAMPLE_ENV:
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    command = [DICOMFLOW, "serve", spec, "--port", str(port), "--data-dir", str(work / "data")]
    command += ["--no-web", "--quiet-period", "1", "--log-path", str(work / "pipeline.log")]
    scp = subprocess.Popen(
        ["storescp", "-aet", "RTSERVICE", "-od", str(scp_folder), str(scp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with log.open("wb") as stream:
        node = subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, cwd=work, env=clean_env(env)
        )
    try:
        return _drive(name, node, port, ae_title, series, work, scp_folder)
    finally:
        for process in (node, scp):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _drive(
    name: str,
    node: subprocess.Popen[bytes],
    port: int,
    ae_title: str,
    series: list[Path],
    work: Path,
    scp_folder: Path,
) -> Row:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not listening(port):
        if node.poll() is not None or time.monotonic() > deadline:
            return Row("examples", name, "fails at start", last_line(_logs(work)))
        time.sleep(0.2)
    command = ["storescu", "-aec", ae_title, "127.0.0.1", str(port), *map(str, series)]
    sent = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if sent.returncode != 0:
        return Row("examples", name, "fails at start", "storescu: " + last_line(sent.stderr))
    return _outcome(name, node, work, scp_folder)


def _logs(work: Path) -> str:
    """Every log the node wrote: its output, --log-path and an example's own log file."""
    return "\n".join(p.read_text(errors="replace") for p in sorted(work.glob("*.log")))


def _exception(text: str) -> str:
    """The last ``SomeError: message`` of a failed round's traceback (logged on one line)."""
    failed = last_line(text.replace("\\n", "\n"), r"^\w+(\.\w+)*(Error|Exception)\b")
    return failed or last_line(text, "failed")


def _outcome(name: str, node: subprocess.Popen[bytes], work: Path, scp_folder: Path) -> Row:
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        text = _logs(work)
        if re.search(r"round \S+: processed in", text):
            sent_on = len(list(scp_folder.iterdir()))
            detail = f"round processed; {sent_on} instance(s) at the RT service" if sent_on else ""
            return Row("examples", name, "runs", detail or "round processed")
        if re.search(r"round \S+ failed", text):
            return Row("examples", name, "fails in processing", _exception(text))
        if node.poll() is not None:
            return Row("examples", name, "fails in processing", "node exited: " + last_line(text))
        time.sleep(0.5)
    if any(scp_folder.iterdir()):
        return Row("examples", name, "runs", "sent the images to the RT service; no round")
    text = _logs(work)
    refused = "matches no input" in text
    detail = "every instance refused: " if refused else "validate() never true: "
    return Row("examples", name, "never triggered", detail + last_line(text, "WARNING|ERROR"))


def measure_examples(repo: Path, scratch: Path) -> list[Row]:
    tree = export(repo, "HEAD", scratch / "dicomnode")
    examples = sorted((tree / "examples").glob("*.py"))
    verdicts = {p.name: original_verdict(p, tree / "src") for p in examples}
    rewrite_imports(examples, [("dicomnode", "dicomflow")])
    series = synthetic_series(scratch / "series")
    rows = []
    for example in examples:
        row = _measure_example(example, series, scratch / "runs" / example.stem)
        original = verdicts[example.name]
        detail = f"{row.detail} [original: {original}]" if original else row.detail
        rows.append(Row(row.section, row.item, row.outcome, detail))
    return rows


def _measure_example(example: Path, series: list[Path], work: Path) -> Row:
    work.mkdir(parents=True, exist_ok=True)
    found = probe(example)
    if "error" in found:
        missing = found.get("missing") or ""
        return Row("examples", example.name, "fails to import", f"{missing} {found['error']}")
    pipelines = list(found.get("pipelines") or [])  # type: ignore[call-overload]
    inputs = list(found.get("inputs") or [])  # type: ignore[call-overload]
    titles: dict[str, str] = found.get("ae_titles") or {}  # type: ignore[assignment]
    if pipelines:
        spec, ae_title = f"{example}:{pipelines[0]}", titles[pipelines[0]]
    elif inputs:
        wrapper = example.parent / f"harness_{example.stem}.py"
        wrapper.write_text(WRAPPER.format(module=example.stem, input_class=inputs[0]))
        spec, ae_title = f"{wrapper}:HarnessPipeline", "HARNESS"
    else:
        return Row("examples", example.name, "fails at start", "defines no pipeline or input")
    row = run_example(spec, ae_title, series, work)
    if not pipelines:
        row = Row(row.section, example.name, row.outcome, f"(input only) {row.detail}")
    return row


# -- test suites (DicomNode's public-API tests, cloud_optimized_dicom's tests) ---------------


@dataclass(frozen=True)
class Counts:
    """What pytest reported for one module."""

    tests: int
    passed: int
    failed: int
    errors: int
    skipped: int
    note: str = ""


def run_pytest(tree: Path, module: str, report: Path) -> Counts:
    """Run one test module with pytest in ``tree``; count from its JUnit XML."""
    (tree / "pytest.ini").write_text("[pytest]\npython_files = test*.py\n")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module]
    command += ["-c", str(tree / "pytest.ini"), "--rootdir", str(tree), "--timeout", "60"]
    command += [f"--junitxml={report}"]
    try:
        result = subprocess.run(
            command, cwd=tree, capture_output=True, text=True, timeout=600, env=clean_env({})
        )
    except subprocess.TimeoutExpired:
        return Counts(0, 0, 0, 1, 0, "module timed out after 600 s")
    if not report.is_file():
        return Counts(0, 0, 0, 1, 0, last_line(result.stdout + result.stderr))
    return _counts(report, result.stdout, tree / module)


def _counts(report: Path, output: str, module: Path) -> Counts:
    suite = ElementTree.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    tests, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0))
    errors, skipped = int(suite.get("errors", 0)), int(suite.get("skipped", 0))
    note = ""
    if errors or failed:
        messages = [
            _reason(child.get("message") or "", child.text or "")
            for case in suite.iter("testcase")
            for child in case
            if child.tag in ("failure", "error")
        ]
        note = messages[0] if messages else last_line(output)
    if tests <= errors and "collection failure" in ElementTree.tostring(suite).decode():
        static = len(re.findall(r"^\s*def test", module.read_text(errors="replace"), re.MULTILINE))
        return Counts(static, 0, 0, static, 0, f"module not collected: {note}")
    passed = tests - failed - errors - skipped
    return Counts(tests, passed, failed, errors, skipped, note)


def _reason(message: str, text: str) -> str:
    """The line that says why: the message, unless pytest only says "collection failure"."""
    if message and message != "collection failure":
        return message.splitlines()[0][:160]
    return last_line(text, r"^E\s|Error")[:160]


def counts_row(section: str, item: str, counts: Counts) -> Row:
    outcome = f"{counts.passed}/{counts.tests} passed"
    extra = [f"{n} {label}" for n, label in ((counts.failed, "failed"), (counts.errors, "errors"))]
    extra += [f"{counts.skipped} skipped"] if counts.skipped else []
    detail = ", ".join(e for e in extra if not e.startswith("0 "))
    if counts.note:
        detail = f"{detail}; first: {counts.note}" if detail else counts.note
    return Row(section, item, outcome, detail)


def measure_dicomnode_tests(repo: Path, scratch: Path) -> list[Row]:
    if importlib.util.find_spec("psutil") is None:  # the original's test helpers import it
        return [
            Row("tests", "(not run)", "needs psutil", f"{sys.executable} -m pip install psutil")
        ]
    tree = export(repo, "HEAD", scratch / "dicomnode-tests")
    shutil.rmtree(tree / "src")  # run against dicomflow only
    rewrite_imports((tree / "tests").rglob("*.py"), [("dicomnode", "dicomflow")])
    scaffold(tree / "tests")
    edits = "package files: no aggregate imports, math imported lazily (scaffold())"
    rows = [Row("tests", "(modules run)", str(len(DICOMNODE_TESTS)), edits)]
    totals = [0, 0]
    for module in DICOMNODE_TESTS:
        counts = run_pytest(tree, module, scratch / "junit" / f"{Path(module).stem}.xml")
        totals = [totals[0] + counts.passed, totals[1] + counts.tests]
        rows.append(counts_row("tests", module, counts))
    rows.append(Row("tests", "TOTAL", f"{totals[0]}/{totals[1]} passed"))
    return rows


def measure_cod_tests(repo: Path, commit: str, scratch: Path) -> list[Row]:
    tree = export(repo, commit, scratch / "cod")
    tests = tree / "cod_tests"
    shutil.move(str(tree / "cloud_optimized_dicom" / "tests"), tests)
    shutil.rmtree(tree / "cloud_optimized_dicom")
    renames = [("cloud_optimized_dicom.tests", "cod_tests")]
    rewrite_imports(tests.rglob("*.py"), [*renames, ("cloud_optimized_dicom", "dicomflow.cod")])
    rows = [Row("cod", "(commit)", commit[:12], "README.md equals seed 003")]
    local, gcs = [0, 0], 0
    for module in sorted(tests.glob("test_*.py")):
        text = module.read_text(errors="replace")
        if GCS_MARKER.search(text):
            count = len(re.findall(r"^\s+def test_", text, re.MULTILINE))
            gcs += count
            rows.append(Row("cod", module.name, f"{count} need GCS", "real bucket; not run"))
            continue
        counts = run_pytest(tree, f"cod_tests/{module.name}", scratch / "junit" / module.name)
        local = [local[0] + counts.passed, local[1] + counts.tests]
        rows.append(counts_row("cod", module.name, counts))
    rows.append(Row("cod", "TOTAL", f"{local[0]}/{local[1]} passed", f"{gcs} need a GCS bucket"))
    return rows


# -- dcm-processor services ------------------------------------------------------------------


def service_folders(scratch: Path, repos: list[tuple[str, Path, str]]) -> list[tuple[str, Path]]:
    """(label, folder) of every service in each repository's ``services`` folder."""
    found = []
    for label, repo, services in repos:
        if not repo.is_dir():
            continue
        tree = export(repo, "HEAD", scratch / "services" / label)
        for folder in sorted(p for p in (tree / services).iterdir() if p.is_dir()):
            found.append((f"{label}:{folder.name}", folder))
    return found


def install_service(label: str, folder: Path, registry: Path) -> Row:
    command = [DICOMFLOW, "service", "install", folder.name, "-p", str(folder), "-r", str(registry)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=clean_env({}))
    if result.returncode == 0:
        return Row("services", label, "installed", last_line(result.stdout, "."))
    return Row("services", label, "error", last_line(result.stderr + result.stdout, "error"))


def measure_services(scratch: Path, mirror: Path, fork: Path) -> list[Row]:
    """Install each repository's services into one registry, as its users do.

    A service whose ``dependsOn`` names another service's job can only be installed
    after it, so the services are installed in passes until a pass installs none.
    """
    repos = [("mirror", mirror, "cli/dcm_processor/services"), ("fork", fork, "services")]
    results: dict[str, Row] = {}
    pending = service_folders(scratch, repos)
    while pending:
        failed = []
        for label, folder in pending:
            registry = scratch / "registries" / label.split(":")[0]
            results[label] = install_service(label, folder, registry)
            if results[label].outcome != "installed":
                failed.append((label, folder))
        if len(failed) == len(pending):
            break
        pending = failed
    return [results[label] for label in sorted(results)]


# -- the command -----------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("section", "item", "outcome")]
    widths = [min(w, 60) for w in widths]
    for row in rows:
        cells = (row.section, row.item, row.outcome)
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))
        print(f"{line}  {row.detail}".rstrip())


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dicomnode", type=Path, default=DICOMNODE)
    parser.add_argument("--cod", type=Path, default=COD)
    parser.add_argument("--cod-commit", help="default: the commit whose README is seed 003")
    parser.add_argument("--dcm-processor", type=Path, default=DCM_PROCESSOR)
    parser.add_argument("--dcm-processor-fork", type=Path, default=DCM_PROCESSOR_FORK)
    parser.add_argument("--seed", type=Path, default=SEED_README)
    parser.add_argument("--only", action="append", choices=SECTIONS, help="repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    scratch = Path(tempfile.mkdtemp(prefix="dicomflow-originals-"))
    sections = arguments.only or list(SECTIONS)
    commit = arguments.cod_commit or cod_commit(arguments.cod, arguments.seed)
    measures: dict[str, Callable[[], list[Row]]] = {
        "examples": lambda: measure_examples(arguments.dicomnode, scratch),
        "tests": lambda: measure_dicomnode_tests(arguments.dicomnode, scratch),
        "cod": lambda: measure_cod_tests(arguments.cod, commit, scratch),
        "services": lambda: measure_services(
            scratch, arguments.dcm_processor, arguments.dcm_processor_fork
        ),
    }
    rows: list[Row] = []
    try:
        for section in sections:
            rows += measures[section]()
    finally:
        if arguments.keep:
            print(f"scratch folder kept: {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows)
    if arguments.json:
        arguments.json.write_text(json.dumps([row.__dict__ for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
