"""A full disk: the node refuses instances (0xA700) rather than failing, and comes back.

The data directory lives on a small tmpfs of its own (the tests run as root); the
disk is filled by a file beside it.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from dicomflow.dicom.factory import make_ct_series, write_series
from support import fill_filesystem, free_port, small_filesystem, wait_for, wait_for_port

HERE = Path(__file__).parent
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
SEGMENT_BYTES = 4 * 1024 * 1024
REFUSED = "Refused: OutOfResources"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs mounted for the test."""
    try:
        with small_filesystem(tmp_path / "disk", "24m") as mount_point:
            yield mount_point
    except OSError as exc:
        pytest.skip(str(exc))


def serve(port: int, data: Path, log: Path) -> subprocess.Popen[bytes]:
    command = [DICOMFLOW, "serve", f"{HERE / 'sample_pipelines.py'}:TwoInputPipeline"]
    command += ["--port", str(port), "--data-dir", str(data), "--no-web"]
    env = dict(os.environ, DICOMFLOW_SPOOL_JOURNAL_SEGMENT_BYTES=str(SEGMENT_BYTES))
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, env=env)
    wait_for_port(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def store(port: int, files: list[Path]) -> str:
    command = ["storescu", "-v", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    result = subprocess.run([*command, *map(str, files)], capture_output=True, text=True)
    return result.stdout + result.stderr


def echo(port: int) -> int:
    command = ["echoscu", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, timeout=30).returncode


def spooled(data: Path) -> set[str]:
    return {path.stem for path in (data / "spool" / "incoming").rglob("*.dcm")}


def test_a_node_killed_while_the_disk_is_full_restarts_and_refuses_until_space_frees(
    small_disk: Path, tmp_path: Path
) -> None:
    series = make_ct_series(6, rows=16, columns=16)
    files = write_series(series, tmp_path / "ct")
    port, data, log = free_port(), small_disk / "data", tmp_path / "node.log"
    node = serve(port, data, log)
    try:
        assert "Received Store Response (Success" in store(port, files[:3])
        filler = fill_filesystem(small_disk)
        store(port, files[3:5])  # into the journal's segment, or refused
        node.kill()
        node.wait()
        acknowledged = spooled(data)  # checked again once the journal is replayed

        node = serve(port, data, log)
        assert echo(port) == 0
        # An instance may still fit the journal's preallocated segment (durable, so
        # acknowledged) until the spool writer meets the full disk; then all are refused.
        wait_for(lambda: REFUSED in store(port, files[5:]), 15, "instances refused")
        filler.unlink()
        wait_for(lambda: "Success" in store(port, files[5:]), 30, "an instance accepted")
    finally:
        stop(node)
    uids = {str(pydicom.dcmread(path).SOPInstanceUID) for path in files}
    assert acknowledged <= spooled(data) <= uids
    assert str(series[5].SOPInstanceUID) in spooled(data)
    assert not list((data / "journal").glob("*.creating"))
