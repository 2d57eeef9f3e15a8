"""install / remove / backup / list_services, including all-or-nothing installs and venvs."""

import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from service_files import ServiceFolder

from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.environment import venv_python
from dicomflow.services.install import backup, install, list_services, remove
from dicomflow.services.registry import Registry
from dicomflow.services.runner import run_service_job

JOB = {"jobName": "seg", "worker": "work.run", "callback": "always"}


def job(**fields: Any) -> dict[str, Any]:
    return {**JOB, **fields}


def leftovers(root: Path, name: str) -> list[Path]:
    """Anything of service ``name`` or of an unfinished operation under ``root``."""
    found = [root / part / name for part in ("registry", "modules", "venvs")]
    found = [path for path in found if path.exists()]
    return found + [path for path in root.rglob(".*") if path.name.startswith(".")]


def test_install_places_both_halves(root: Path, service_folder: ServiceFolder) -> None:
    specs = install("brain", service_folder("brain", job()), root)
    assert [spec.job_name for spec in specs] == ["seg"]
    assert (root / "registry" / "brain" / "settings.json").is_file()
    assert (root / "registry" / "brain" / "callbacks.py").is_file()
    assert (root / "modules" / "brain" / "work.py").is_file()
    assert not (root / "venvs" / "brain").exists()
    assert list_services(root) == ["brain"]
    assert [j.name for j in Registry(root).load().jobs] == ["seg"]
    assert not [path for path in root.iterdir() if path.name.startswith(".")]


def test_list_services_is_sorted(root: Path, service_folder: ServiceFolder) -> None:
    for name in ("zeta", "alpha", "mid"):
        install(name, service_folder(name, job(jobName=f"job-{name}")), root)
    assert list_services(root) == ["alpha", "mid", "zeta"]


def test_a_second_install_replaces_the_first_after_a_backup(
    root: Path, service_folder: ServiceFolder
) -> None:
    install("brain", service_folder("brain", job()), root)
    install("brain", service_folder("brain2", job(jobName="other")), root)
    assert [j.name for j in Registry(root).load().jobs] == ["other"]
    [archive] = (root / "backups").iterdir()
    with tarfile.open(archive) as tar:
        member = tar.extractfile("brain/registry/settings.json")
        assert member is not None and b'"seg"' in member.read()
    assert not [path for path in root.iterdir() if path.name.startswith(".")]


def test_a_failed_replacement_keeps_the_installed_service(
    root: Path, service_folder: ServiceFolder
) -> None:
    install("brain", service_folder("brain", job()), root)
    broken = service_folder("brain2", job(jobName="other", worker="missing.run"))
    with pytest.raises(ServiceDefinitionError, match='no module "missing"'):
        install("brain", broken, root)
    assert [j.name for j in Registry(root).load().jobs] == ["seg"]
    assert not [path for path in root.iterdir() if path.name.startswith(".")]


@pytest.mark.parametrize("name", ["", "../evil", ".hidden", "a/b"])
def test_unsafe_names_are_refused(root: Path, service_folder: ServiceFolder, name: str) -> None:
    with pytest.raises(ServiceDefinitionError, match="is not allowed"):
        install(name, service_folder("x", job()), root)
    assert list(root.iterdir()) == []


FAILURES = [
    pytest.param({"settings": "{"}, "invalid JSON at line 1, column 2", id="invalid-json"),
    pytest.param(
        {"settings": job(callback="nowhere")},
        'field "callback" names "nowhere", which is not defined',
        id="missing-callback",
    ),
    pytest.param(
        {"settings": job(), "callbacks": "raise ImportError('nope')\n"},
        "callbacks.py failed to import: ImportError: nope",
        id="callback-import-error",
    ),
    pytest.param(
        {"settings": job(jobName="taken")},
        'job "taken": jobName is already used by the job in',
        id="name-clash",
    ),
    pytest.param(
        {"settings": job(dependsOn="ghost")},
        'field "dependsOn" names "ghost", which is not a job of any installed service',
        id="unknown-dependency",
    ),
    pytest.param(
        {"settings": job(worker="elsewhere.run")},
        'field "worker" is "elsewhere.run", but no module "elsewhere" is in',
        id="worker-not-found",
    ),
]


@pytest.mark.parametrize(("service", "message"), FAILURES)
def test_a_failed_install_leaves_nothing(
    root: Path, service_folder: ServiceFolder, service: dict[str, Any], message: str
) -> None:
    install("old", service_folder("old", job(jobName="taken")), root)
    with pytest.raises(ServiceDefinitionError, match=re.escape(message)):
        install("new", service_folder("new", **service), root)
    assert leftovers(root, "new") == []
    assert list_services(root) == ["old"]


def test_install_errors_name_the_source_file(root: Path, service_folder: ServiceFolder) -> None:
    source = service_folder("new", job(timeout="soon"))
    expected = f'{source / "registry" / "settings.json"}: job "seg": field "timeout" is "soon"'
    with pytest.raises(ServiceDefinitionError, match=re.escape(expected)):
        install("new", source, root)


def test_a_source_without_module_folder_is_refused(root: Path, tmp_path: Path) -> None:
    (tmp_path / "src" / "registry").mkdir(parents=True)
    with pytest.raises(ServiceDefinitionError, match="has no module/ folder"):
        install("new", tmp_path / "src", root)
    assert leftovers(root, "new") == []


def test_failed_requirements_leave_nothing(root: Path, service_folder: ServiceFolder) -> None:
    module = {"work.py": "def run(**kwargs):\n    pass\n"}
    module["requirements.txt"] = "dicomflow-no-such-package-xyz\n"
    with pytest.raises(ServiceDefinitionError, match="dicomflow-no-such-package-xyz") as caught:
        install("new", service_folder("new", job(), module=module), root)
    assert "Installing" in str(caught.value) and "failed (exit status" in str(caught.value)
    assert leftovers(root, "new") == []
    assert list_services(root) == []


def test_requirements_get_their_own_environment(
    root: Path, service_folder: ServiceFolder, tmp_path: Path
) -> None:
    worker = """
        import pathlib
        import six

        def run(output_dir, **kwargs):
            pathlib.Path(output_dir, "six").write_text(six.__name__)
        """
    module = {"work.py": worker, "requirements.txt": "six\n"}
    install("brain", service_folder("brain", job(), module=module), root)
    venv = root / "venvs" / "brain"
    check = "import dicomflow, pydicom, six"
    subprocess.run([str(venv_python(venv)), "-c", check], check=True, timeout=60)
    [loaded] = Registry(root).load().jobs
    assert loaded.venv_dir == venv
    service = {"name": "brain", "worker": "work.run", "module_dir": str(loaded.module_dir)}
    run_service_job(service={**service, "venv_dir": str(venv)}, output_dir=str(tmp_path))
    assert (tmp_path / "six").read_text() == "six"
    remove("brain", root)
    assert leftovers(root, "brain") == []


def test_remove_deletes_every_half(root: Path, service_folder: ServiceFolder) -> None:
    install("brain", service_folder("brain", job()), root)
    (root / "venvs" / "brain").mkdir()
    assert remove("brain", root) is None
    assert leftovers(root, "brain") == []
    assert list_services(root) == []


def test_remove_cleans_up_what_a_crash_left(root: Path) -> None:
    (root / "modules" / "half").mkdir(parents=True)
    remove("half", root)
    assert leftovers(root, "half") == []


def test_removing_an_unknown_service_is_an_error(root: Path) -> None:
    with pytest.raises(ServiceDefinitionError, match=f'Service "ghost" is not installed in {root}'):
        remove("ghost", root)


def test_remove_with_backup_archives_first(
    root: Path, service_folder: ServiceFolder, tmp_path: Path
) -> None:
    install("brain", service_folder("brain", job()), root)
    archive = remove("brain", root, backup=tmp_path / "backups")
    assert archive is not None and archive.parent == tmp_path / "backups"
    assert re.fullmatch(r"brain-\d{8}-\d{6}\.tar\.gz", archive.name)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"brain/registry/settings.json", "brain/module/work.py"} <= names
    assert list_services(root) == []


def test_a_backup_installs_again(root: Path, service_folder: ServiceFolder, tmp_path: Path) -> None:
    install("brain", service_folder("brain", job()), root)
    Registry(root).load()  # leaves __pycache__ behind, which is not archived
    archive = backup("brain", root, tmp_path / "brain.tar.gz")
    assert archive == tmp_path / "brain.tar.gz"
    with tarfile.open(archive) as tar:
        assert not [name for name in tar.getnames() if "__pycache__" in name]
        tar.extractall(tmp_path / "restored", filter="data")
    remove("brain", root)
    install("brain", tmp_path / "restored" / "brain", root)
    assert [j.name for j in Registry(root).load().jobs] == ["seg"]


def test_backups_never_overwrite(root: Path, service_folder: ServiceFolder, tmp_path: Path) -> None:
    install("brain", service_folder("brain", job()), root)
    first = backup("brain", root, tmp_path)
    second = backup("brain", root, tmp_path)
    assert first != second and first.exists() and second.exists()
    with pytest.raises(ServiceDefinitionError, match="exists already"):
        backup("brain", root, first)


def test_backing_up_an_unknown_service_is_an_error(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ServiceDefinitionError, match='Service "ghost" is not installed'):
        backup("ghost", root, tmp_path)
