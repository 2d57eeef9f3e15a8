"""settings.json: every field, every kind of mistake, and the job graph checks."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from dicomflow.errors import ServiceDefinitionError
from dicomflow.queue.job import Priority
from dicomflow.services.definitions import load_settings, read_settings
from dicomflow.services.graph import dependency_order
from dicomflow.services.job_spec import JobSpec

JOB = {"jobName": "seg", "worker": "seg.run", "callback": "want_seg"}


def job(**fields: Any) -> dict[str, Any]:
    return {**JOB, **fields}


def write(folder: Path, data: Any, name: str = "settings.json") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_a_single_object_gets_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, JOB)
    [spec] = read_settings(path, "brain")
    assert spec == JobSpec("seg", "seg.run", "want_seg", service="brain", source=path)
    assert (spec.timeout_s, spec.priority, spec.params) == (3600.0, Priority.DEFAULT, {})
    assert (spec.depends_on, spec.sort_position, spec.description) == ((), 0.0, "")


def test_an_array_with_every_field(tmp_path: Path) -> None:
    full = {
        "jobName": "report",
        "worker": "reports.make:Builder.run",
        "callback": "want_report",
        "dependsOn": ["seg", "seg"],
        "priority": "high",
        "timeout": "10m",
        "params": {"format": "pdf"},
        "sortPosition": 2,
        "description": "A PDF report.",
    }
    specs = read_settings(write(tmp_path, [JOB, full]))
    assert [spec.job_name for spec in specs] == ["seg", "report"]
    report = specs[1]
    assert report.depends_on == ("seg",)
    assert (report.priority, report.timeout_s, report.sort_position) == (Priority.HIGH, 600, 2)
    assert (report.params, report.description) == ({"format": "pdf"}, "A PDF report.")


def test_a_job_whose_results_are_sent_deidentified(tmp_path: Path) -> None:
    [plain, private] = read_settings(write(tmp_path, [JOB, job(jobName="b", deidentify=True)]))
    assert (plain.deidentify, private.deidentify) == (False, True)


def test_a_single_dependency_may_be_a_string(tmp_path: Path) -> None:
    [_, spec] = read_settings(write(tmp_path, [JOB, job(jobName="b", dependsOn="seg")]))
    assert spec.depends_on == ("seg",)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90),
        (2.5, 2.5),
        ("90", 90),
        ("90s", 90),
        ("10m", 600),
        ("1h", 3600),
        ("1d", 86400),
        ("1.5h", 5400),
        (" 2M ", 120),
    ],
)
def test_timeouts(tmp_path: Path, value: Any, seconds: float) -> None:
    [spec] = read_settings(write(tmp_path, job(timeout=value)))
    assert spec.timeout_s == seconds


@pytest.mark.parametrize(
    ("value", "priority"),
    [
        ("high", Priority.HIGH),
        ("LOW", Priority.LOW),
        ("default", Priority.DEFAULT),
        (5, Priority.HIGH),
        (0.5, Priority.HIGH),
        (0, Priority.DEFAULT),
        (-1, Priority.LOW),
    ],
)
def test_priorities(tmp_path: Path, value: Any, priority: Priority) -> None:
    [spec] = read_settings(write(tmp_path, job(priority=value)))
    assert spec.priority is priority


TIMEOUT = 'expected a positive number of seconds or "90s", "10m", "1h", "1d".'
BROKEN = [
    ({"worker": "a.b", "callback": "c"}, 'entry 1: field "jobName" is missing.'),
    ({"jobName": "seg", "callback": "c"}, 'job "seg": field "worker" is missing.'),
    ({"jobName": "seg", "worker": "a.b"}, 'job "seg": field "callback" is missing.'),
    (job(jobName=5), 'entry 1: field "jobName" is 5; expected a non-blank string.'),
    (job(jobName=" "), 'entry 1: field "jobName" is " "; expected a non-blank string.'),
    (job(worker=3), 'job "seg": field "worker" is 3; expected a non-blank string.'),
    (
        job(worker="run"),
        'job "seg": field "worker" is "run"; expected "module.function" or "module:function".',
    ),
    (
        job(worker="a..b"),
        'job "seg": field "worker" is "a..b"; expected "module.function" or "module:function".',
    ),
    (
        job(callback="mod..fn"),
        'job "seg": field "callback" is "mod..fn"; expected the name of a function',
    ),
    (job(dependsOn=5), 'job "seg": field "dependsOn" is 5; expected a job name or a list'),
    (job(dependsOn=["a", 1]), 'job "seg": field "dependsOn" is ["a", 1]; expected a job name'),
    (job(priority="urgent"), 'job "seg": field "priority" is "urgent"; expected "high", "default"'),
    (job(priority=True), 'job "seg": field "priority" is true; expected "high"'),
    (job(timeout="10x"), f'job "seg": field "timeout" is "10x"; {TIMEOUT}'),
    (job(timeout="1w"), f'job "seg": field "timeout" is "1w"; {TIMEOUT}'),
    (job(timeout=""), f'job "seg": field "timeout" is ""; {TIMEOUT}'),
    (job(timeout=-5), f'job "seg": field "timeout" is -5; {TIMEOUT}'),
    (job(timeout=0), f'job "seg": field "timeout" is 0; {TIMEOUT}'),
    (job(timeout=True), f'job "seg": field "timeout" is true; {TIMEOUT}'),
    (job(params=[]), 'job "seg": field "params" is []; expected an object.'),
    (job(sortPosition="first"), 'job "seg": field "sortPosition" is "first"; expected a number.'),
    (job(sortPosition=True), 'job "seg": field "sortPosition" is true; expected a number.'),
    (job(description=3), 'job "seg": field "description" is 3; expected a string.'),
    (job(deidentify="yes"), 'job "seg": field "deidentify" is "yes"; expected true or false.'),
    (
        job(dependson="x"),
        'job "seg": field "dependson" is not a known field; did you mean "dependsOn"?',
    ),
    (
        job(colour="red"),
        'job "seg": field "colour" is not a known field; known fields: jobName, worker,',
    ),
    (5, "holds 5; expected a job object or a non-empty array of them."),
    ([], "holds []; expected a job object or a non-empty array of them."),
    ([JOB, 3], "entry 2 is 3; expected a job object."),
    ([JOB, JOB], 'job "seg": jobName is declared twice in the file.'),
]


@pytest.mark.parametrize(("data", "message"), BROKEN)
def test_a_broken_file_names_the_file_job_field_and_value(
    tmp_path: Path, data: Any, message: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ServiceDefinitionError, match=re.escape(f"{path}: {message}")):
        read_settings(path)


def test_invalid_json_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "jobName": "seg",\n  "worker": "seg.run"\n  "callback": "c"\n}')
    expected = f"{path}: invalid JSON at line 4, column 3: Expecting ',' delimiter."
    with pytest.raises(ServiceDefinitionError, match=re.escape(expected)):
        read_settings(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    with pytest.raises(ServiceDefinitionError, match=re.escape(f"{path}: cannot be read")):
        read_settings(path)


GRAPH = [
    (
        [job(dependsOn="nope")],
        'job "seg": field "dependsOn" names "nope", which is not a job of any installed service.',
    ),
    (
        [job(), job(jobName="b", dependsOn="sge")],
        'job "b": field "dependsOn" names "sge", which is not a job of any installed service; '
        'did you mean "seg"?',
    ),
    ([job(dependsOn="seg")], "dependency cycle seg -> seg."),
    (
        [job(jobName="a", dependsOn="b"), job(jobName="b", dependsOn="c"), job(jobName="c")],
        None,
    ),
    (
        [
            job(jobName="a", dependsOn="b"),
            job(jobName="b", dependsOn=["c"]),
            job(jobName="c", dependsOn=["z", "a"]),
            job(jobName="z"),
        ],
        "dependency cycle a -> b -> c -> a.",
    ),
]


@pytest.mark.parametrize(("data", "message"), GRAPH)
def test_graph_problems_are_named(tmp_path: Path, data: Any, message: str | None) -> None:
    path = write(tmp_path, data)
    if message is None:
        assert len(load_settings(path)) == len(data)
        return
    with pytest.raises(ServiceDefinitionError, match=re.escape(f"{path}: {message}")):
        load_settings(path)


def test_a_name_taken_by_an_installed_service_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    installed = read_settings(write(tmp_path / "old", JOB), "old")
    path = write(tmp_path, JOB)
    expected = f'{path}: job "seg": jobName is already used by the job in {installed[0].source}.'
    with pytest.raises(ServiceDefinitionError, match=re.escape(expected)):
        load_settings(path, "new", installed=installed)


def test_dependencies_on_installed_jobs_resolve(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    installed = read_settings(write(tmp_path / "old", JOB), "old")
    [spec] = load_settings(write(tmp_path, job(jobName="b", dependsOn="seg")), installed=installed)
    assert spec.depends_on == ("seg",)


def spec(name: str, *depends_on: str, sort: float = 0) -> JobSpec:
    return JobSpec(name, "m.f", "cb", depends_on=depends_on, sort_position=sort)


def test_order_is_dependencies_then_sort_position_then_name() -> None:
    specs = [
        spec("d", "c", sort=-10),
        spec("c", "a", sort=0),
        spec("a", sort=5),
        spec("e", sort=1),
        spec("b", sort=1),
    ]
    assert [s.job_name for s in dependency_order(specs)] == ["b", "e", "a", "c", "d"]


def test_a_job_comes_after_its_deepest_dependency() -> None:
    specs = [spec("late", "x", "deep", sort=-5), spec("x"), spec("deep", "x", sort=9)]
    assert [s.job_name for s in dependency_order(specs)] == ["x", "deep", "late"]


def test_ordering_a_cycle_raises() -> None:
    with pytest.raises(ServiceDefinitionError, match="dependency cycle a -> b -> a"):
        dependency_order([spec("a", "b"), spec("b", "a")])
