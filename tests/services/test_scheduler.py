"""schedule_series: the callback contract, order, injected params and the enqueued graph."""

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_backend import FakeBackend
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName
from service_files import WORKER, write_files

from dicomflow.queue.job import JobStatus, Priority
from dicomflow.services.job_spec import JobSpec, Stage
from dicomflow.services.registry import RegisteredJob
from dicomflow.services.scheduler import RUNNER, Decision, schedule_series

MODULES = Path("/srv/dicomflow/modules/svc")
HEADERS = {"Modality": "CT", "SeriesInstanceUID": "1.2.3"}


def registered(
    name: str,
    callback: Callable[..., Any],
    *depends_on: str,
    sort: float = 0,
    params: dict[str, Any] | None = None,
    module_dir: Path = MODULES,
) -> RegisteredJob:
    spec = JobSpec(
        name,
        "work.run",
        callback.__name__,
        depends_on=depends_on,
        sort_position=sort,
        params=params or {},
        priority=Priority.LOW,
        timeout_s=90,
        service="svc",
    )
    return RegisteredJob(spec, callback, module_dir)


def always(**kwargs: Any) -> bool:
    return True


def never(**kwargs: Any) -> bool:
    return False


def schedule(jobs: list[RegisteredJob], backend: FakeBackend | None = None, **options: Any) -> Any:
    options.setdefault("series_key", "series-1")
    return schedule_series(jobs, HEADERS, backend or FakeBackend(), **options)


def test_a_callback_gets_the_seed_keyword_arguments_and_the_extras() -> None:
    calls: list[dict[str, Any]] = []

    def record(jobName: str, headers: Any, params: Any, added_params: Any, **kwargs: Any) -> bool:
        calls.append(
            {"jobName": jobName, "headers": headers, "params": params, "added": added_params}
        )
        calls.append(kwargs)
        return True

    base = {"input_dir": "/in", "output_dir": "/out"}
    schedule([registered("seg", record, params={"level": 3})], base_kwargs=base)
    assert calls == [
        {"jobName": "seg", "headers": HEADERS, "params": {"level": 3}, "added": {}},
        base,
    ]


def test_a_callback_without_kwargs_gets_only_what_it_declares() -> None:
    seen: list[str] = []

    def narrow(jobName: str) -> bool:
        seen.append(jobName)
        return True

    report = schedule([registered("seg", narrow)], base_kwargs={"input_dir": "/in"})
    assert seen == ["seg"]
    assert report.scheduled == ["seg"]


def test_a_callback_mutating_its_params_changes_nothing_else() -> None:
    def meddle(params: dict[str, Any], headers: dict[str, Any], **kwargs: Any) -> bool:
        params["nested"]["x"] = "changed"
        headers["Modality"] = "MR"
        return True

    job = registered("seg", meddle, params={"nested": {"x": "original"}})
    backend = FakeBackend()
    schedule([job], backend)
    assert job.spec.params == {"nested": {"x": "original"}}
    [queued] = backend.batches[0]
    assert queued.kwargs["params"] == {"nested": {"x": "original"}}
    assert queued.kwargs["headers"] == HEADERS


def test_injected_params_reach_later_callbacks_and_every_worker() -> None:
    seen: list[dict[str, Any]] = []

    def inject(**kwargs: Any) -> tuple[bool, dict[str, Any]]:
        return True, {"mask": "mask.nii"}

    def consume(added_params: dict[str, Any], **kwargs: Any) -> bool:
        seen.append(added_params)
        return True

    backend = FakeBackend()
    report = schedule([registered("report", consume, "seg"), registered("seg", inject)], backend)
    assert seen == [{"seg": {"mask": "mask.nii"}}]
    assert report.added_params == {"seg": {"mask": "mask.nii"}}
    for queued in backend.batches[0]:
        assert queued.kwargs["added_params"] == {"seg": {"mask": "mask.nii"}}


def test_false_with_params_injects_but_does_not_schedule() -> None:
    def decline(**kwargs: Any) -> tuple[bool, dict[str, Any]]:
        return False, {"reason": "too few slices"}

    backend = FakeBackend()
    report = schedule([registered("seg", decline), registered("other", always)], backend)
    assert report.outcome("seg").decision is Decision.SKIPPED
    assert [job.name for job in backend.batches[0]] == ["other"]
    assert backend.batches[0][0].kwargs["added_params"] == {"seg": {"reason": "too few slices"}}


def test_a_raising_callback_is_recorded_with_its_traceback() -> None:
    def explode(**kwargs: Any) -> bool:
        raise RuntimeError("boom 42")

    backend = FakeBackend()
    report = schedule([registered("seg", explode), registered("other", always)], backend)
    outcome = report.outcome("seg")
    assert outcome.decision is Decision.FAILED
    assert "Traceback" in outcome.error
    assert "RuntimeError: boom 42" in outcome.error
    assert outcome.job_id is None
    assert report.errors == {"seg": outcome.error}
    assert [job.name for job in backend.batches[0]] == ["other"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [(None, "None"), ("yes", "'yes'"), (1, "1"), ((True, [1]), "(True, [1])")],
)
def test_a_callback_returning_something_else_fails_its_job(value: object, shown: str) -> None:
    def odd(**kwargs: Any) -> object:
        return value

    report = schedule([registered("seg", odd)])
    expected = f'Job "seg": callback "odd" of service "svc" returned {shown}; expected True'
    assert report.outcome("seg").decision is Decision.FAILED
    assert report.outcome("seg").error.startswith(expected)


def test_injected_params_must_be_json() -> None:
    def unsendable(**kwargs: Any) -> tuple[bool, dict[str, Any]]:
        return True, {"thing": object()}

    report = schedule([registered("seg", unsendable)])
    assert report.outcome("seg").decision is Decision.FAILED
    assert (
        "the params its callback added cannot be sent to a worker as JSON" in report.errors["seg"]
    )


def test_true_with_none_is_plain_true() -> None:
    def plain(**kwargs: Any) -> tuple[bool, None]:
        return True, None

    report = schedule([registered("seg", plain)])
    assert (report.scheduled, report.added_params) == (["seg"], {})


def test_added_params_never_leak_from_one_series_into_the_next() -> None:
    """Changed in place, added_params reach the later callbacks of the same series only."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def mutate(jobName: str, added_params: dict[str, Any], **kwargs: Any) -> tuple[bool, Any]:
        seen.append((jobName, dict(added_params)))
        added_params["shared"] = kwargs["series_uid"]  # the seed's mutable-default trap
        return True, {"series": kwargs["series_uid"]}

    jobs = [registered("first", mutate), registered("second", mutate, "first")]
    one = schedule(jobs, series_key="one", base_kwargs={"series_uid": "1"})
    two = schedule(jobs, series_key="two", base_kwargs={"series_uid": "2"})
    assert seen == [
        ("first", {}),
        ("second", {"shared": "1", "first": {"series": "1"}}),
        ("first", {}),
        ("second", {"shared": "2", "first": {"series": "2"}}),
    ]
    expected = {"shared": "1", "first": {"series": "1"}, "second": {"series": "1"}}
    assert one.added_params == expected
    assert two.added_params == {"shared": "2", "first": {"series": "2"}, "second": {"series": "2"}}


def test_schedule_series_has_no_mutable_defaults() -> None:
    for parameter in inspect.signature(schedule_series).parameters.values():
        assert not isinstance(parameter.default, dict | list | set), parameter.name


def test_callbacks_run_in_dependency_then_sort_order() -> None:
    order: list[str] = []

    def note(jobName: str, **kwargs: Any) -> bool:
        order.append(jobName)
        return True

    jobs = [
        registered("send", note, "report", sort=-9),
        registered("report", note, "seg"),
        registered("seg", note, sort=5),
        registered("anon", note, sort=5),
        registered("zeta", note, sort=-1),
    ]
    report = schedule(jobs)
    assert order == ["zeta", "anon", "seg", "report", "send"]
    assert report.scheduled == order


def test_the_graph_is_enqueued_once_with_dependency_ids() -> None:
    backend = FakeBackend()
    jobs = [
        registered("seg", always),
        registered("report", always, "seg"),
        registered("send", always, "seg", "report"),
    ]
    base = {"input_dir": "/data/in", "output_dir": "/data/out"}
    report = schedule(jobs, backend, series_key="1.2.3", base_kwargs=base)
    [batch] = backend.batches
    ids = {job.name: job.id for job in batch}
    assert [job.name for job in batch] == ["seg", "report", "send"]
    assert [job.depends_on for job in batch] == [[], [ids["seg"]], [ids["seg"], ids["report"]]]
    assert {o.job_name: o.job_id for o in report.outcomes} == ids
    assert report.jobs == batch
    send = batch[2]
    assert (send.function, send.priority, send.timeout_s) == (RUNNER, Priority.LOW, 90)
    assert send.meta == {"service": "svc", "series": "1.2.3", "channel": "default"}
    assert json.loads(json.dumps(send.kwargs)) == send.kwargs
    assert send.kwargs == {
        "service": {
            "name": "svc",
            "worker": "work.run",
            "module_dir": str(MODULES),
            "venv_dir": None,
        },
        "jobName": "send",
        "headers": HEADERS,
        "params": {},
        "added_params": {},
        **base,
    }


def test_a_dependency_not_scheduled_fails_its_dependants() -> None:
    def explode(**kwargs: Any) -> bool:
        raise ValueError("no")

    backend = FakeBackend()
    jobs = [
        registered("seg", never),
        registered("report", always, "seg"),
        registered("send", always, "report"),
        registered("calc", explode),
        registered("stats", always, "calc"),
        registered("lonely", never, "seg"),
        registered("free", always),
    ]
    report = schedule(jobs, backend, series_key="1.2.3")
    decisions = {o.job_name: o.decision.value for o in report.outcomes}
    assert decisions == {
        "seg": "skipped",
        "calc": "failed",
        "free": "scheduled",
        "lonely": "skipped",
        "report": "failed",
        "stats": "failed",
        "send": "failed",
    }
    assert report.errors["report"] == (
        'Job "report" of service "svc" is wanted for series "1.2.3" but depends on "seg" '
        "(its callback returned False); it is not enqueued, as it would wait forever."
    )
    assert 'depends on "report" (it failed)' in report.errors["send"]
    assert 'depends on "calc" (it failed)' in report.errors["stats"]
    assert [job.name for job in backend.batches[0]] == ["free"]


def test_a_dependency_outside_the_given_jobs_is_an_error() -> None:
    report = schedule([registered("report", always, "seg")])
    assert 'depends on "seg" (not among the jobs given to the scheduler)' in report.errors["report"]


def test_nothing_wanted_enqueues_nothing() -> None:
    backend = FakeBackend()
    report = schedule([registered("seg", never)], backend)
    assert (backend.batches, report.jobs, report.scheduled) == ([], [], [])


@pytest.mark.parametrize("name", ["jobName", "params", "added_params", "headers", "service"])
def test_reserved_names_cannot_be_base_kwargs(name: str) -> None:
    with pytest.raises(ValueError, match=f'Series "series-1": base_kwargs may not set {name};'):
        schedule([registered("seg", always)], base_kwargs={name: 1})


def test_headers_and_paths_are_made_json(tmp_path: Path) -> None:
    seen: list[Any] = []

    def look(headers: dict[str, Any], **kwargs: Any) -> bool:
        seen.append((headers, kwargs["in"]))
        return True

    headers = {
        "PatientName": PersonName("Doe^John"),
        "ImageType": MultiValue(str, ["ORIGINAL", "PRIMARY"]),
        "Rows": 512,
    }
    backend = FakeBackend()
    schedule_series(
        [registered("seg", look)], headers, backend, series_key="s", base_kwargs={"in": tmp_path}
    )
    expected = {"PatientName": "Doe^John", "ImageType": ["ORIGINAL", "PRIMARY"], "Rows": 512}
    assert seen == [(expected, str(tmp_path))]
    assert backend.batches[0][0].kwargs["headers"] == expected


def test_headers_that_cannot_be_json_are_refused() -> None:
    message = re.escape('Series "s": headers cannot be sent to a worker as JSON')
    with pytest.raises(TypeError, match=message):
        schedule_series([], {"Raw": b"\x00"}, FakeBackend(), series_key="s")


def test_scheduled_workers_run_with_the_injected_params(tmp_path: Path) -> None:
    write_files(tmp_path / "module", {"work.py": WORKER})

    def inject(**kwargs: Any) -> tuple[bool, dict[str, Any]]:
        return True, {"mask": "m.nii"}

    jobs = [
        registered("seg", inject, params={"level": 1}, module_dir=tmp_path / "module"),
        registered("report", always, "seg", module_dir=tmp_path / "module"),
    ]
    backend = FakeBackend()
    schedule(jobs, backend, base_kwargs={"output_dir": tmp_path})
    backend.run_all()
    assert {job.name: job.status for job in backend.store.values()} == {
        "seg": JobStatus.FINISHED,
        "report": JobStatus.FINISHED,
    }
    written = json.loads((tmp_path / "seg.json").read_text())
    assert written == {"params": {"level": 1}, "added_params": {"seg": {"mask": "m.nii"}}}


def staged(name: str, stage: Stage, *depends_on: str, disabled: bool = False) -> RegisteredJob:
    spec = JobSpec(
        name, "work.run", "always", depends_on=depends_on, stage=stage, disabled=disabled
    )
    return RegisteredJob(spec, always, MODULES)


def test_later_stages_depend_on_the_scheduled_jobs_of_earlier_ones() -> None:
    backend = FakeBackend()
    jobs = [
        staged("clean", Stage.POST, "store"),
        staged("store", Stage.POST),
        staged("seg", Stage.MAIN),
        staged("anon", Stage.PRE),
    ]
    report = schedule(jobs, backend)
    [batch] = backend.batches
    ids = {job.name: job.id for job in batch}
    assert report.scheduled == ["anon", "seg", "store", "clean"]
    assert {job.name: set(job.depends_on) for job in batch} == {
        "anon": set(),
        "seg": {ids["anon"]},
        "store": {ids["anon"], ids["seg"]},
        "clean": {ids["anon"], ids["seg"], ids["store"]},
    }


def test_a_disabled_job_is_not_asked_and_its_dependants_are_refused() -> None:
    asked: list[str] = []

    def ask(jobName: str, **kwargs: Any) -> bool:
        asked.append(jobName)
        return True

    off = RegisteredJob(JobSpec("off", "work.run", "ask", disabled=True), ask, MODULES)
    after = RegisteredJob(JobSpec("after", "work.run", "ask", depends_on=("off",)), ask, MODULES)
    report = schedule([off, after])
    assert asked == ["after"]
    assert report.outcome("off").decision is Decision.DISABLED
    assert report.outcome("after").decision is Decision.FAILED
    assert '"off" (it is disabled)' in report.errors["after"]
