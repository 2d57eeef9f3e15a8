"""run_service_job: finding the worker in the service's folders and calling it by keyword."""

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from service_files import write_files

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.runner import run_service_job

MODULE = {
    "wide.py": """
        import json, pathlib

        def run(jobName, headers, params, added_params, **kwargs):
            pathlib.Path(kwargs["output_dir"], "out.json").write_text(json.dumps(
                {"jobName": jobName, "headers": headers, "params": params,
                 "added_params": added_params, "extras": sorted(kwargs)}))
        """,
    "narrow.py": """
        import json, pathlib

        def run(jobName, params, output_dir):
            pathlib.Path(output_dir, "out.json").write_text(json.dumps(
                {"jobName": jobName, "params": params}))
        """,
    "pkg/__init__.py": "",
    "pkg/tasks.py": """
        import json, pathlib

        class Task:
            @staticmethod
            def run(jobName, output_dir, **kwargs):
                pathlib.Path(output_dir, "out.json").write_text(json.dumps({"jobName": jobName}))

        def go(jobName, output_dir, **kwargs):
            Task.run(jobName, output_dir)
        """,
    "broken.py": """
        def run(**kwargs):
            raise RuntimeError("worker broke")
        """,
}


def job_kwargs(module_dir: Path, worker: str, output_dir: Path, **extra: Any) -> dict[str, Any]:
    service = {"name": "svc", "worker": worker, "module_dir": str(module_dir), "venv_dir": None}
    return {
        "service": service,
        "jobName": "seg",
        "headers": {"Modality": "CT"},
        "params": {"level": 2},
        "added_params": {"other": {"x": 1}},
        "output_dir": str(output_dir),
        **extra,
    }


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    write_files(tmp_path / "module", MODULE)
    return tmp_path / "module"


def written(folder: Path) -> Any:
    return json.loads((folder / "out.json").read_text())


def test_a_worker_with_kwargs_gets_everything(module_dir: Path, tmp_path: Path) -> None:
    run_service_job(**job_kwargs(module_dir, "wide.run", tmp_path, input_dir="/in"))
    assert written(tmp_path) == {
        "jobName": "seg",
        "headers": {"Modality": "CT"},
        "params": {"level": 2},
        "added_params": {"other": {"x": 1}},
        "extras": ["input_dir", "output_dir"],
    }


def test_a_worker_without_kwargs_gets_what_it_declares(module_dir: Path, tmp_path: Path) -> None:
    run_service_job(**job_kwargs(module_dir, "narrow:run", tmp_path, input_dir="/in"))
    assert written(tmp_path) == {"jobName": "seg", "params": {"level": 2}}


@pytest.mark.parametrize("worker", ["pkg.tasks.go", "pkg.tasks:go", "pkg.tasks:Task.run"])
def test_worker_references(module_dir: Path, tmp_path: Path, worker: str) -> None:
    run_service_job(**job_kwargs(module_dir, worker, tmp_path))
    assert written(tmp_path) == {"jobName": "seg"}


@pytest.mark.parametrize(
    ("worker", "message"),
    [
        ("nothere.run", 'worker "nothere.run" cannot be imported from {dir}: No module named'),
        ("wide.nope", 'worker "wide.nope": module wide has no "nope".'),
        (
            "pkg.tasks:Task.nope",
            'worker "pkg.tasks:Task.nope": module pkg.tasks has no "Task.nope"',
        ),
    ],
)
def test_a_missing_worker_is_named(
    module_dir: Path, tmp_path: Path, worker: str, message: str
) -> None:
    expected = re.escape(f'Service "svc": {message.format(dir=module_dir)}')
    with pytest.raises(ServiceDefinitionError, match=expected):
        run_service_job(**job_kwargs(module_dir, worker, tmp_path))


def test_a_worker_exception_fails_the_job(module_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="worker broke"):
        run_service_job(**job_kwargs(module_dir, "broken.run", tmp_path))


def test_malformed_kwargs_are_refused() -> None:
    with pytest.raises(ServiceDefinitionError, match='need "service" with "name", "worker"'):
        run_service_job(jobName="seg")


def test_services_with_same_module_names_keep_their_own_code(tmp_path: Path) -> None:
    for name in ("a", "b"):
        worker = f"""
            import pathlib

            def run(output_dir, **kwargs):
                pathlib.Path(output_dir, "who").write_text("{name}")
            """
        write_files(tmp_path / name, {"work.py": worker})
    path_before = list(sys.path)
    for name in ("a", "b"):
        run_service_job(**job_kwargs(tmp_path / name, "work.run", tmp_path))
        assert (tmp_path / "who").read_text() == name
    assert sys.path == path_before
    assert "work" not in sys.modules


def test_the_service_environment_is_importable(tmp_path: Path) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = tmp_path / "venv" / "lib" / version / "site-packages"
    write_files(site_packages, {"helperlib_xyz.py": "VALUE = 'from the venv'\n"})
    worker = """
        import pathlib
        import helperlib_xyz

        def run(output_dir, **kwargs):
            pathlib.Path(output_dir, "who").write_text(helperlib_xyz.VALUE)
        """
    write_files(tmp_path / "module", {"work.py": worker})
    kwargs = job_kwargs(tmp_path / "module", "work.run", tmp_path)
    kwargs["service"]["venv_dir"] = str(tmp_path / "venv")
    run_service_job(**kwargs)
    assert (tmp_path / "who").read_text() == "from the venv"
    assert "helperlib_xyz" not in sys.modules


def test_environment_modules_already_imported_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    write_files(tmp_path / "venv" / "lib" / version / "site-packages" / "pydicom", {"x.py": ""})
    write_files(tmp_path / "module", {"work.py": "def run(**kwargs):\n    pass\n"})
    kwargs = job_kwargs(tmp_path / "module", "work.run", tmp_path)
    kwargs["service"]["venv_dir"] = str(tmp_path / "venv")
    import pydicom  # noqa: F401  (the worker process has it already)

    with caplog.at_level("WARNING", logger="dicomflow.services.runner"):
        run_service_job(**kwargs)
    assert "service svc: pydicom already imported by this worker process" in caplog.text
