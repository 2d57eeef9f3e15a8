"""The ``dicomflow`` console script, run as a user runs it: a subprocess on loopback."""

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicomflow.dicom.factory import make_ct_series, write_series
from support import StoreSCPPeer, free_port, storescu, wait_for, wait_for_port

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
PIPELINES = Path(__file__).parent / "pipelines"
COPY_PIPELINE = PIPELINES / "copy_pipeline.py"
REPO = Path(__file__).parents[2]
MARK = "copied by the CLI test pipeline"
STOP_TIMEOUT_S = 15  # stopping takes ~0.5 s; the margin is for a loaded 2-core CI machine


def stops_cleanly(process: subprocess.Popen[bytes], log: Path) -> None:
    """``process`` exits 0 within STOP_TIMEOUT_S; if not, fail showing its log's tail."""
    try:
        code = process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"not stopped within {STOP_TIMEOUT_S} s; its log ends:\n{tail}")
    assert code == 0, log.read_text(errors="replace")[-4000:]


SEED_PIPELINE = """
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor, Address


class AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]


class MyPipeline(AbstractPipeline):
    port = {port}
    root_data_directory = {data!r}
    endpoints = [Address("127.0.0.1", {endpoint_port}, "PACS")]
    input = {{"any": AnyInstance}}

    class Processor(AbstractProcessor):
        def process(self, input_container):
            datasets = list(input_container["any"])
            for dataset in datasets:
                dataset.ImageComments = {mark!r}
            return datasets


if __name__ == "__main__":
    {main}
"""


def clean_env() -> dict[str, str]:
    """The environment without ``DICOMFLOW_*`` settings that would change what is tested,
    and with the dashboard on any free port (8080 may be taken on a developer's machine)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    return {**env, "DICOMFLOW_WEB_PORT": "0"}


def dicomflow(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DICOMFLOW, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert text in errors[0], result.stderr


def uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths}


def write_seed_pipeline(folder: Path, port: int, data: Path, endpoint_port: int, main: str) -> Path:
    path = folder / "seed_pipeline.py"
    source = SEED_PIPELINE.format(
        port=port, data=str(data), endpoint_port=endpoint_port, mark=MARK, main=main
    )
    path.write_text(source)
    return path


Launcher = Callable[[list[str]], subprocess.Popen[bytes]]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """Start long-running commands (output in ``tmp_path/node.log``); kill leftovers."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(command: list[str]) -> subprocess.Popen[bytes]:
        with (tmp_path / "node.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=clean_env()
            )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def node_command(mode: str, tmp_path: Path, port: int, data: Path, peer: StoreSCPPeer) -> list[str]:
    """How a user starts a node in each documented way."""
    if mode == "serve":  # the class attributes are left at their defaults; options give all
        options = ["--port", str(port), "--data-dir", str(data), "--endpoint", peer.endpoint()]
        return [DICOMFLOW, "serve", str(COPY_PIPELINE), *options]
    main = "MyPipeline().open()" if mode == "python-open" else "MyPipeline()"
    script = write_seed_pipeline(tmp_path, port, data, peer.port, main)
    if mode == "run":
        return [DICOMFLOW, "run", str(script)]
    return [sys.executable, str(script)]


@pytest.mark.parametrize(
    ("mode", "stop_signal"),
    [
        ("serve", signal.SIGINT),
        ("serve", signal.SIGTERM),
        ("run", signal.SIGINT),
        ("python-script", signal.SIGTERM),
        ("python-open", signal.SIGINT),
    ],
)
def test_node_receives_processes_delivers_and_stops_on_signal(
    mode: str, stop_signal: signal.Signals, tmp_path: Path, storescp: StoreSCPPeer, launch: Launcher
):
    port, data = free_port(), tmp_path / "data"
    files = write_series(make_ct_series(3), tmp_path / "series")
    node = launch(node_command(mode, tmp_path, port, data, storescp))
    wait_for_port(port, timeout_s=30)
    storescu(port, files)
    wait_for(lambda: len(storescp.files()) == len(files), 60, "results at storescp")
    assert uids(storescp.files()) == uids(files)
    assert {pydicom.dcmread(p).ImageComments for p in storescp.files()} == {MARK}
    assert (data / "spool" / "incoming").is_dir(), "the configured data directory is used"
    node.send_signal(stop_signal)
    stops_cleanly(node, tmp_path / "node.log")
    log = (tmp_path / "node.log").read_text()
    assert "Traceback" not in log
    assert log.count("listening on") == 1, "one node, started once"
    assert "stopped" in log


def test_serve_on_port_0_listens_on_an_os_assigned_port(
    tmp_path: Path, storescp: StoreSCPPeer, launch: Launcher
):
    command = [DICOMFLOW, "serve", str(COPY_PIPELINE), "--port", "0", "--data-dir", "data"]
    node = launch([*command, "--endpoint", storescp.endpoint()])
    log = tmp_path / "node.log"
    wait_for(lambda: "listening on" in log.read_text(), 30, "the node to listen")
    port = int(re.findall(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())[0])
    assert port not in (0, 104), "an OS-assigned port, not the default 104"
    assert dicomflow("echo", "127.0.0.1", port, "--aec", "DICOMFLOW", cwd=tmp_path).returncode == 0
    node.send_signal(signal.SIGINT)
    stops_cleanly(node, tmp_path / "node.log")


BAD_PIPELINES = [
    pytest.param("no[b]such.py", 'Pipeline file "{tmp}/no[b]such.py" does not exist.', id="none"),
    pytest.param("broken.py", 'Cannot load pipeline "{tmp}/broken.py": SyntaxError', id="syntax"),
    pytest.param(
        PIPELINES / "no_pipeline.py",
        "must define exactly one AbstractPipeline subclass (found: none)",
        id="no-pipeline",
    ),
    pytest.param(
        PIPELINES / "instance_input.py",
        'InstanceInputPipeline.input["ct"] must be an AbstractInput subclass (the class, not an',
        id="instance-input",
    ),
    pytest.param(
        PIPELINES / "bogus_keyword.py",
        'Input "ct" (MisspeltInput): required_tags: "SliceThiknes" is neither a DICOM keyword',
        id="bogus-keyword",
    ),
    pytest.param(
        PIPELINES / "no_processor.py",
        "NoProcessorPipeline must define a nested class Processor(AbstractProcessor) with",
        id="no-processor",
    ),
]


@pytest.mark.parametrize(("pipeline", "message"), BAD_PIPELINES)
def test_bad_pipeline_gives_one_line_error(pipeline: str | Path, message: str, tmp_path: Path):
    (tmp_path / "broken.py").write_text("class Broken(:\n    pass\n")
    spec = pipeline if isinstance(pipeline, Path) else tmp_path / pipeline
    result = dicomflow("serve", spec, "--port", free_port(), "--data-dir", "data", cwd=tmp_path)
    assert_one_line_error(result, 2, message.format(tmp=tmp_path))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--port", "70000", "setting port: Input should be less than or equal to 65535"),
        ("--endpoint", "PACS@nowhere", 'endpoint "PACS@nowhere" must look like AE_TITLE@host:port'),
        ("--ae-title", "A" * 17, f'setting ae_title: "{"A" * 17}" is not a valid'),
        ("--workers", "0", "setting workers: Input should be greater than or equal to 1"),
    ],
)
def test_invalid_setting_gives_one_line_error(
    option: str, value: str, message: str, tmp_path: Path
):
    result = dicomflow("serve", COPY_PIPELINE, "--data-dir", "data", option, value, cwd=tmp_path)
    assert_one_line_error(result, 2, message)


def test_port_in_use_gives_one_line_error(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = dicomflow(
            "serve", COPY_PIPELINE, "--port", port, "--data-dir", tmp_path / "data", cwd=tmp_path
        )
    assert_one_line_error(result, 1, f"Cannot listen on 127.0.0.1:{port}: Address already in use.")


def test_echo_succeeds_against_storescp(tmp_path: Path, storescp: StoreSCPPeer):
    result = dicomflow("echo", "127.0.0.1", storescp.port, "--aec", "PACS", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"C-ECHO to PACS@127.0.0.1:{storescp.port}: success\n"


def test_echo_to_closed_port_is_unreachable(tmp_path: Path):
    result = dicomflow("echo", "127.0.0.1", free_port(), cwd=tmp_path)
    assert_one_line_error(result, 1, "the peer is unreachable (Connection refused).")


def bundled_files() -> list[Path]:
    names = ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "rtplan.dcm"]
    return [Path(get_testdata_file(name)) for name in names]  # type: ignore[arg-type]


@pytest.mark.parametrize("as_folder", [True, False], ids=["folder", "files"])
def test_send_delivers_every_file(tmp_path: Path, storescp: StoreSCPPeer, as_folder: bool):
    folder = tmp_path / "to-send"
    series = write_series(make_ct_series(5), folder / "series")
    bundled = []
    for path in bundled_files():
        (folder / path.name).write_bytes(path.read_bytes())
        bundled.append(folder / path.name)
    (folder / "notes.txt").write_text("not DICOM")
    files = series + bundled
    targets = [folder] if as_folder else files
    result = dicomflow("send", "127.0.0.1", storescp.port, *targets, "--aec", "PACS", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"sent {len(files)} of {len(files)} instance(s)" in result.stdout
    assert uids(storescp.files()) == uids(files)


def test_send_fails_each_bad_file_alone_and_lists_every_failure(
    tmp_path: Path, storescp: StoreSCPPeer
):
    """Files cut short make the peer abort: each fails alone, the others arrive over new
    associations, and the summary names every one that failed (here more than 20)."""
    files = write_series(make_ct_series(46, rows=32, columns=32), tmp_path / "to-send")
    bad, good = files[1::2], files[0::2]
    for path in bad:
        path.write_bytes(path.read_bytes()[:-700])  # inside the pixel data
    result = dicomflow(
        "send", "127.0.0.1", storescp.port, tmp_path / "to-send", "--aec", "PACS", cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert f"sent {len(good)} of {len(files)} instance(s)" in output
    assert uids(storescp.files()) == uids(good)
    failed = [line for line in output.splitlines() if line.startswith("failed ")]
    assert [line.split()[1].rstrip(":") for line in failed] == [str(path) for path in bad]


def test_send_to_closed_port_fails_in_one_line(tmp_path: Path):
    files = write_series(make_ct_series(2), tmp_path / "series")
    result = dicomflow("send", "127.0.0.1", free_port(), *files, cwd=tmp_path)
    assert_one_line_error(result, 1, "the peer is unreachable (Connection refused).")


def test_demo_delivers_bone_masks_and_says_where(tmp_path: Path):
    data = tmp_path / "demo-data"
    result = dicomflow("demo", "--data-dir", data, "--count", 8, cwd=REPO)
    assert result.returncode == 0, result.stderr
    folder = data / "demo-pacs"
    assert f"8 result instance(s) in {folder}" in result.stdout
    masks = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    assert len(masks) == 8
    values = set()
    for mask in masks:
        assert "Bone mask" in mask.SeriesDescription
        values |= set(np.unique(mask.pixel_array).tolist())
    assert values == {0, 1}
    assert len({mask.SeriesInstanceUID for mask in masks}) == 1


def test_service_commands_install_list_backup_remove(tmp_path: Path) -> None:
    examples = Path(__file__).parents[2] / "examples" / "services"
    root = tmp_path / "services"

    def dicomflow(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "dicomflow"), "service", *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert (
        dicomflow("install", "measure", "-p", str(examples / "measure"), "-r", str(root)).returncode
        == 0
    )
    assert (
        dicomflow("install", "mask", "-p", str(examples / "mask"), "-r", str(root)).returncode == 0
    )
    listing = dicomflow("list", "-r", str(root))
    assert "measure" in listing.stdout and "mask" in listing.stdout
    again = dicomflow("install", "mask", "-p", str(examples / "mask"), "-r", str(root))
    assert again.returncode == 0 and "backed up to" in again.stdout  # replaced, as service.sh
    broken = dicomflow("install", "mask", "-p", str(tmp_path / "nothing"), "-r", str(root))
    assert broken.returncode == 1 and "error:" in broken.stderr and "Traceback" not in broken.stderr
    backup = tmp_path / "mask.tar.gz"
    assert dicomflow("backup", "mask", "-b", str(backup), "-r", str(root)).returncode == 0
    assert backup.stat().st_size > 0
    assert dicomflow("remove", "mask", "-r", str(root)).returncode == 0
    assert "mask" not in dicomflow("list", "-r", str(root)).stdout.replace("measure", "")


def test_dashboard_without_a_node_serves_the_queue_and_archive(tmp_path: Path, launch):
    data = tmp_path / "data"
    process = launch([DICOMFLOW, "dashboard", "--data-dir", str(data)])
    log = tmp_path / "node.log"
    wait_for(lambda: "dashboard: http" in log.read_text(), 30, "the dashboard")
    url = re.search(r"dashboard: (http://\S+)", log.read_text()).group(1)  # type: ignore[union-attr]
    token = (data / "web-token").read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/health").json()["dicom_listening"] is False
        assert client.get("/api/jobs").status_code == 200
        assert client.get("/dicomweb/studies").status_code in (200, 204)
        assert client.get("/api/jobs", headers={"Authorization": "Bearer x"}).status_code == 401
    process.send_signal(signal.SIGINT)
    stops_cleanly(process, log)


def test_serve_with_the_dashboard_port_taken_is_a_one_line_error(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = dicomflow(
            "serve",
            COPY_PIPELINE,
            "--port",
            0,
            "--data-dir",
            tmp_path / "d",
            "--web-port",
            port,
            cwd=tmp_path,
        )
    assert_one_line_error(result, 1, f"Dashboard cannot listen on 127.0.0.1:{port}")
