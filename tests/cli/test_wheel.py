"""The built wheel, installed into a fresh virtual environment outside the checkout, runs a
node with its dashboard: every file the package needs besides its modules is in it."""

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import wait_for

REPO = Path(__file__).parents[2]
PACKAGE = REPO / "src" / "dicomflow"
BUILD_FILES = ("pyproject.toml", "README.md")
SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def build_wheel(folder: Path) -> Path:
    """Build the wheel from a copy of the sources (the checkout stays untouched)."""
    source = folder / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=SKIPPED)
    for name in BUILD_FILES:
        shutil.copy2(REPO / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), "."], source)
    (wheel,) = folder.glob("dicomflow-*.whl")
    return wheel


def resources() -> set[str]:
    """Every file of the package that is not Python source, as a path in the wheel."""
    found = set()
    for path in PACKAGE.rglob("*"):
        if (
            path.is_file()
            and path.suffix not in (".py", ".pyc")
            and "__pycache__" not in path.parts
        ):
            found.add(path.relative_to(PACKAGE.parent).as_posix())
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, the ``bin`` folder of a fresh virtual environment it is installed in).

    The wheel is installed without its dependencies; they come from the test run's own
    environment, added as a path (not as a site folder, so its editable dicomflow is
    not seen): installing them all again took a minute and tests pip, not the wheel.
    """
    folder = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(folder)
    run([sys.executable, "-m", "venv", str(folder / "venv")], folder)
    bin_folder = folder / "venv" / "bin"
    python = str(bin_folder / "python")
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], folder)
    dependencies = sysconfig.get_path("purelib")
    (Path(site.strip()) / "test-dependencies.pth").write_text(dependencies + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], folder)
    yield wheel, bin_folder


def test_the_wheel_holds_every_resource_of_the_package(installed: tuple[Path, Path]):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = resources()
    assert {"dicomflow/py.typed", "dicomflow/web/static/dashboard.css"} <= expected
    assert any(name.startswith("dicomflow/web/templates/") for name in expected)
    assert expected - names == set()


def test_installed_package_is_the_wheel_and_knows_its_version(
    installed: tuple[Path, Path], tmp_path: Path
):
    _, bin_folder = installed
    probe = "import dicomflow; print(dicomflow.__file__)"
    where = run([str(bin_folder / "python"), "-c", probe], tmp_path)
    assert where.startswith(str(bin_folder.parent)), "imported from the checkout"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert run([str(bin_folder / "dicomflow"), "--version"], tmp_path) == f"dicomflow {version}\n"


def test_installed_node_serves_health_and_the_dashboard(
    installed: tuple[Path, Path], tmp_path: Path
):
    _, bin_folder = installed
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    env |= {"DICOMFLOW_WEB_PORT": "0", "DICOMFLOW_SPOOL_JOURNAL_SEGMENT_BYTES": str(4 << 20)}
    command = [str(bin_folder / "dicomflow"), "serve", "--archive", "archive", "--port", "0"]
    log = tmp_path / "node.log"
    with log.open("wb") as output:
        node = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=output)
    try:
        wait_for(lambda: "dashboard: http" in log.read_text() or node.poll() is not None, 60)
        match = re.search(r"dashboard: (http://\S+)", log.read_text())
        assert match is not None, log.read_text()
        token = (tmp_path / "dicomflow-data" / "web-token").read_text().strip()
        with httpx.Client(base_url=match.group(1), timeout=10) as client:
            assert client.get("/health").status_code == 200
            for path in ("/", "/jobs"):
                page = client.get(path, headers={"Authorization": f"Bearer {token}"})
                assert page.status_code == 200 and "</html>" in page.text.lower(), path
            assert client.get("/static/dashboard.css").status_code == 200
    finally:
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=10) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
