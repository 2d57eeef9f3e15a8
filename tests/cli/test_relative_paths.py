"""The README's service commands, typed as written: every path relative to the working
directory, while the jobs run in working directories of their own."""

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, storescu, wait_for

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
EXAMPLES = Path(__file__).parents[2] / "examples" / "services"
SERVICES = "dicomflow-data/services"


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    return env | {"DICOMFLOW_WEB_PORT": "0", "DICOMFLOW_SERIES_QUIET_PERIOD_S": "1"}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A working directory holding the example services where the README has them."""
    folder = tmp_path / "site"
    shutil.copytree(EXAMPLES, folder / "examples" / "services")
    return folder


@pytest.fixture
def node_log(site: Path) -> Iterator[tuple[list[subprocess.Popen[bytes]], Path]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes, site / "node.out"
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def install(site: Path, name: str) -> None:
    command = [DICOMFLOW, "service", "install", name, "-p", f"examples/services/{name}"]
    result = subprocess.run(
        [*command, "-r", SERVICES], cwd=site, env=environment(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("archive", [None, "archive"], ids=["by-reference", "archive"])
def test_relative_services_archive_and_log_paths_work_from_any_directory(
    site: Path,
    storescp: StoreSCPPeer,
    node_log: tuple[list[subprocess.Popen[bytes]], Path],
    archive: str | None,
):
    processes, log = node_log
    install(site, "measure")
    install(site, "mask")
    command = [DICOMFLOW, "serve", "--services", SERVICES, "--endpoint", storescp.endpoint()]
    command += ["--port", "0", "--log-path", "logs/node.log"]
    command += ["--archive", archive] if archive else []
    with log.open("wb") as output:
        processes.append(
            subprocess.Popen(command, cwd=site, env=environment(), stdout=output, stderr=output)
        )
    wait_for(lambda: "listening on" in log.read_text(), 30, "the node to listen")
    port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())[0])
    storescu(port, write_series(make_ct_series(3), site.parent / "series"))
    failed = re.compile(r"job \w+ failed")
    wait_for(lambda: len(storescp.files()) == 3 or failed.search(log.read_text()), 90, "the jobs")
    assert len(storescp.files()) == 3, log.read_text()[-3000:]
    masks = [pydicom.dcmread(path) for path in storescp.files()]
    assert {mask.SeriesDescription for mask in masks} == {"Bone mask (dicomflow service example)"}
    if archive:
        assert list((site / archive).glob("studies/*/series/*.tar")), "archived where asked"
    assert "listening on" in (site / "logs" / "node.log").read_text()
    processes[0].send_signal(signal.SIGINT)
    assert processes[0].wait(timeout=10) == 0
    assert "cannot be imported" not in log.read_text()
