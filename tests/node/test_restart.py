"""Crash safety: a node killed with SIGKILL loses nothing it acknowledged."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, free_port, wait_for, wait_for_port

HERE = Path(__file__).parent
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")


def serve(pipeline: str, port: int, data: Path, endpoint: str) -> subprocess.Popen[bytes]:
    command = [DICOMFLOW, "serve", f"{HERE / 'sample_pipelines.py'}:{pipeline}"]
    command += ["--port", str(port), "--data-dir", str(data), "--endpoint", endpoint]
    command += ["--web-port", "0"]  # the dashboard too, on any free port
    log = (data / "node.log").open("ab") if data.exists() else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=log, stderr=log)
    wait_for_port(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def acknowledged(storescu_output: str, files: list[Path]) -> list[Path]:
    """The files storescu got a success response for (it sends them in order)."""
    responses = re.findall(r"Received Store Response \(([^)]*)\)", storescu_output)
    return [path for path, status in zip(files, responses, strict=False) if status == "Success"]


def uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def test_kill_during_transfer_then_restart_processes_every_acknowledged_instance(
    tmp_path: Path, storescp: StoreSCPPeer
):
    files = write_series(make_ct_series(400), tmp_path / "series")
    port, data = free_port(), tmp_path / "data"
    node = serve("CTCopyPipeline", port, data, storescp.endpoint())
    sender = subprocess.Popen(
        ["storescu", "-v", "-aec", "DICOMFLOW", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    incoming = data / "spool" / "incoming"
    wait_for(lambda: sum(1 for _ in incoming.rglob("*.dcm")) >= 40, 60, "instances in the spool")
    node.kill()
    node.wait()
    output, _ = sender.communicate(timeout=60)
    acked = acknowledged(output, files)
    # The 40th instance may be stored but not yet acknowledged when the kill lands.
    assert 30 <= len(acked) < len(files), "the kill should land mid-transfer"
    assert not list(storescp.folder.iterdir()), "nothing may be processed before the restart"

    node = serve("CTCopyPipeline", port, data, storescp.endpoint())
    try:
        wait_for(lambda: uids(storescp.files()) >= uids(acked), 60, "acknowledged instances")
    finally:
        stop(node)
    assert not list(incoming.rglob("*.dcm"))


def test_kill_during_processing_then_restart_reruns_the_round(
    tmp_path: Path, storescp: StoreSCPPeer
):
    files = write_series(make_ct_series(5), tmp_path / "series")
    port, data = free_port(), tmp_path / "data"
    node = serve("SlowPipeline", port, data, storescp.endpoint())
    subprocess.run(
        ["storescu", "-aec", "DICOMFLOW", "127.0.0.1", str(port), *map(str, files)],
        check=True,
        capture_output=True,
    )
    wait_for(lambda: any((data / "rounds").glob("*/work")), 30, "processing to start")
    node.kill()
    node.wait()
    time.sleep(0.5)
    assert not storescp.files()
    assert len(list((data / "rounds").glob("*/instances/*.dcm"))) == 5

    node = serve("SlowPipeline", port, data, storescp.endpoint())
    try:
        wait_for(lambda: len(storescp.files()) == 5, 60, "results after the restart")
    finally:
        stop(node)
    assert uids(storescp.files()) == uids(files)
    assert not list((data / "rounds").iterdir())
