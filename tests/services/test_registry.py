"""Loading the installed services: callbacks by path, order, and broken services one by one."""

import re
from pathlib import Path

import pytest
from service_files import AddService

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.registry import Registry


def job(name: str, callback: str = "always", **fields: object) -> dict[str, object]:
    return {"jobName": name, "worker": "work.run", "callback": callback, **fields}


def test_load_gives_jobs_with_their_callbacks_and_folders(
    root: Path, add_service: AddService
) -> None:
    add_service("brain", [job("seg"), job("skip", "never")])
    report = Registry(root).load()
    assert report.ok
    by_name = {j.name: j for j in report.jobs}
    assert set(by_name) == {"seg", "skip"}
    assert by_name["seg"].callback() is True
    assert by_name["skip"].callback() is False
    assert by_name["seg"].service == "brain"
    assert by_name["seg"].module_dir == root / "modules" / "brain"
    assert by_name["seg"].venv_dir is None


def test_a_venv_folder_is_found(root: Path, add_service: AddService) -> None:
    add_service("brain", job("seg"))
    (root / "venvs" / "brain").mkdir(parents=True)
    [loaded] = Registry(root).load().jobs
    assert loaded.venv_dir == root / "venvs" / "brain"


def test_jobs_across_services_are_in_scheduling_order(root: Path, add_service: AddService) -> None:
    add_service("a", [job("report", dependsOn="seg", sortPosition=-1), job("zeta", sortPosition=3)])
    add_service("b", [job("seg", sortPosition=5), job("anon", sortPosition=5)])
    add_service("c", job("send", dependsOn=["report", "anon"], sortPosition=-9))
    names = [j.name for j in Registry(root).load().jobs]
    assert names == ["zeta", "anon", "seg", "report", "send"]


def test_same_callback_file_and_name_in_two_services_stay_apart(
    root: Path, add_service: AddService
) -> None:
    add_service("a", job("a1", "pick"), callbacks="def pick(**kwargs):\n    return 'a'\n")
    add_service("b", job("b1", "pick"), callbacks="def pick(**kwargs):\n    return 'b'\n")
    results = {j.name: j.callback() for j in Registry(root).load().jobs}
    assert results == {"a1": "a", "b1": "b"}


def test_a_callback_may_live_in_any_registry_file(root: Path, add_service: AddService) -> None:
    add_service("a", job("a1", "extra"))
    (root / "registry" / "a" / "more.py").write_text("def extra(**kwargs):\n    return 42\n")
    [loaded] = Registry(root).load().jobs
    assert loaded.callback() == 42


BROKEN_SERVICES = [
    ("{", "registry/bad/settings.json: invalid JSON at line 1, column 2"),
    (job("x", "missing"), 'field "callback" names "missing", which is not defined in'),
    (job("x", timeout="soon"), 'job "x": field "timeout" is "soon"'),
    (job("x", dependsOn="ghost"), 'field "dependsOn" names "ghost", which is not a job'),
]


@pytest.mark.parametrize(("settings", "message"), BROKEN_SERVICES)
def test_a_broken_service_is_reported_and_the_others_still_load(
    root: Path, add_service: AddService, settings: object, message: str
) -> None:
    add_service("good", job("fine"))
    add_service("bad", settings)
    report = Registry(root).load()
    assert [j.name for j in report.jobs] == ["fine"]
    assert list(report.errors) == ["bad"]
    assert message in str(report.errors["bad"])
    with pytest.raises(
        ServiceDefinitionError, match=r'1 service\(s\) cannot be loaded:\nService "bad"'
    ):
        report.raise_errors()


def test_a_callback_file_that_fails_to_import_is_named(root: Path, add_service: AddService) -> None:
    add_service("bad", job("x"), callbacks="import no_such_module_xyz\n")
    error = Registry(root).load().errors["bad"]
    path = root / "registry" / "bad" / "callbacks.py"
    expected = f'Service "bad": {path} failed to import: ModuleNotFoundError'
    assert str(error).startswith(expected)


def test_a_callback_defined_in_two_files_is_ambiguous(root: Path, add_service: AddService) -> None:
    add_service("bad", job("x"))
    (root / "registry" / "bad" / "other.py").write_text("def always(**kwargs):\n    return 1\n")
    error = Registry(root).load().errors["bad"]
    assert 'callback "always" is defined differently in' in str(error)


def test_a_callback_that_is_not_a_function_is_refused(root: Path, add_service: AddService) -> None:
    add_service("bad", job("x", "VALUE"), callbacks="VALUE = 3\n")
    error = Registry(root).load().errors["bad"]
    assert re.search(r'callback "VALUE" in .*callbacks\.py is int, not a function', str(error))


def test_a_duplicate_name_breaks_the_later_service(root: Path, add_service: AddService) -> None:
    add_service("first", job("seg"))
    add_service("second", [job("seg"), job("other")])
    report = Registry(root).load()
    assert [j.service for j in report.jobs] == ["first"]
    first = root / "registry" / "first" / "settings.json"
    assert f'job "seg": jobName is already used by the job in {first}.' in str(
        report.errors["second"]
    )


def test_dependants_of_a_broken_service_are_broken_too(root: Path, add_service: AddService) -> None:
    add_service("base", job("seg", "missing"))
    add_service("user", job("report", dependsOn="seg"))
    add_service("other", job("fine"))
    report = Registry(root).load()
    assert [j.name for j in report.jobs] == ["fine"]
    assert sorted(report.errors) == ["base", "user"]
    expected = 'names "seg", which is not a job of any installed service (services that failed '
    assert expected + "to load: base)." in str(report.errors["user"])


def test_a_cycle_across_services_breaks_each_of_them(root: Path, add_service: AddService) -> None:
    add_service("a", job("a1", dependsOn="b1"))
    add_service("b", job("b1", dependsOn="a1"))
    add_service("c", job("c1"))
    report = Registry(root).load()
    assert [j.name for j in report.jobs] == ["c1"]
    assert sorted(report.errors) == ["a", "b"]
    assert "dependency cycle a1 -> b1 -> a1" in str(report.errors["b"])


def test_an_empty_root_has_no_services(tmp_path: Path) -> None:
    report = Registry(tmp_path / "nowhere").load()
    assert (report.jobs, report.errors) == ([], {})


@pytest.mark.parametrize("name", ["", "..", "../x", ".hidden", "a/b", "-x", "x" * 101])
def test_unsafe_service_names_are_refused(root: Path, name: str) -> None:
    with pytest.raises(ServiceDefinitionError, match="is not allowed"):
        Registry(root).registry_dir(name)
