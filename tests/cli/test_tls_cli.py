"""DICOM TLS from the command line: ``dicomflow tls selfsigned``, then ``dicomflow serve``
with the TLS options, reached by dcmtk's echoscu ``+tls``; bad files as one error line."""

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import free_port, wait_for

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
PIPELINE = Path(__file__).parent / "pipelines" / "copy_pipeline.py"
STOP_TIMEOUT_S = 15


def environment() -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    return base | {"DICOMFLOW_WEB_PORT": "0"}


def dicomflow(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [DICOMFLOW, *map(str, args)]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env=environment(), timeout=120
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert text in errors[0], result.stderr


def echoscu(port: int, *tls_options: str) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-to", "20", "-aec", "DICOMFLOW", *tls_options, "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Nodes started by a test (output in ``tmp_path/node.log``); killed if still running."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def serve(tmp_path: Path, processes: list[subprocess.Popen[bytes]], *options: object) -> str:
    """Start ``dicomflow serve`` with ``options``; its log line saying where it listens."""
    log = tmp_path / "node.log"
    command = [DICOMFLOW, "serve", str(PIPELINE), "--data-dir", "data", "--no-web"]
    with log.open("ab") as output:
        processes.append(
            subprocess.Popen(
                [*command, *map(str, options)],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=environment(),
            )
        )
    wait_for(lambda: "listening on" in log.read_text(), 60, "the node to listen")
    return next(line for line in log.read_text().splitlines() if "listening on" in line)


def stop(tmp_path: Path, process: subprocess.Popen[bytes]) -> str:
    """Stop the node by SIGINT; its log, once it exited cleanly."""
    process.send_signal(signal.SIGINT)
    log = (tmp_path / "node.log").read_text
    try:
        assert process.wait(timeout=STOP_TIMEOUT_S) == 0, log()[-4000:]
    except subprocess.TimeoutExpired:
        pytest.fail(f"not stopped within {STOP_TIMEOUT_S} s; its log ends:\n{log()[-4000:]}")
    return log()


def selfsigned(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """``dicomflow tls selfsigned`` into ``tmp_path/name``: (certificate, private key)."""
    result = dicomflow("tls", "selfsigned", name, "--common-name", name.upper(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    certificate, key = tmp_path / name / "certificate.pem", tmp_path / name / "private-key.pem"
    assert f"certificate: {name}/certificate.pem" in result.stdout
    assert f"private key: {name}/private-key.pem" in result.stdout
    assert "--tls-cert" in result.stdout  # how to use them
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    return certificate, key


def test_selfsigned_pair_serves_mutual_tls_to_echoscu(
    tmp_path: Path, serving: list[subprocess.Popen[bytes]]
) -> None:
    node_cert, node_key = selfsigned(tmp_path, "node")
    client_cert, client_key = selfsigned(tmp_path, "client")
    port = free_port()
    listening = serve(
        tmp_path,
        serving,
        *("--port", port, "--tls-cert", node_cert, "--tls-key", node_key),
        *("--tls-ca", client_cert),
    )
    assert f"listening on 127.0.0.1:{port} (DICOM TLS, mutual)" in listening
    trusted = echoscu(port, "+tls", str(client_key), str(client_cert), "+cf", str(node_cert))
    assert trusted.returncode == 0, trusted.stderr
    anonymous = echoscu(port, "+tla", "+cf", str(node_cert))
    assert anonymous.returncode != 0
    assert echoscu(port).returncode != 0  # plain DICOM
    log = stop(tmp_path, serving[0])
    assert "Traceback" not in log
    assert "from 127.0.0.1: TLS handshake failed: peer did not return a certificate" in log
    assert "from 127.0.0.1: TLS handshake failed: wrong version number" in log


def test_tls_port_beside_a_plain_port_without_client_certificates(
    tmp_path: Path, serving: list[subprocess.Popen[bytes]]
) -> None:
    node_cert, node_key = selfsigned(tmp_path, "node")
    client_cert, _ = selfsigned(tmp_path, "client")
    port, tls_port = free_port(), free_port()
    listening = serve(
        tmp_path,
        serving,
        *("--port", port, "--tls-port", tls_port),
        *("--tls-cert", node_cert, "--tls-key", node_key, "--tls-ca", client_cert),
        "--no-tls-require-client-cert",
    )
    assert f"127.0.0.1:{port} (plain) and 127.0.0.1:{tls_port} (DICOM TLS)" in listening
    assert echoscu(port).returncode == 0
    anonymous = echoscu(tls_port, "+tla", "+cf", str(node_cert))
    assert anonymous.returncode == 0, anonymous.stderr
    assert "Traceback" not in stop(tmp_path, serving[0])


@pytest.mark.parametrize("command", ["serve", "run"])
@pytest.mark.parametrize(
    ("certificate", "message"),
    [
        ("missing.pem", 'tls_certificate "missing.pem" cannot be read: No such file'),
        ("garbage.pem", 'tls_certificate "garbage.pem" and tls_private_key'),
    ],
    ids=["missing", "garbage"],
)
def test_a_bad_tls_file_is_one_error_line_naming_the_setting(
    command: str, certificate: str, message: str, tmp_path: Path
) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    _, key = selfsigned(tmp_path, "node")
    result = dicomflow(
        *(command, PIPELINE, "--port", free_port(), "--data-dir", "data"),
        *("--tls-cert", certificate, "--tls-key", key),
        cwd=tmp_path,
    )
    assert_one_line_error(result, 1, message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--tls-port", "0"), "tls_port is set but tls_certificate is not"),
        (("--tls-require-client-cert",), "tls_require_client_certificate is on but"),
    ],
    ids=["tls-port-without-certificate", "client-certificates-without-ca"],
)
def test_incomplete_tls_options_are_one_error_line(
    options: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    certificate, key = selfsigned(tmp_path, "node")
    own = () if "--tls-port" in options else ("--tls-cert", certificate, "--tls-key", key)
    result = dicomflow(
        *("serve", PIPELINE, "--data-dir", "data", "--no-web", "--port", free_port()),
        *own,
        *options,
        cwd=tmp_path,
    )
    assert_one_line_error(result, 1, message)


def test_an_invalid_tls_port_names_the_option(tmp_path: Path) -> None:
    result = dicomflow("serve", PIPELINE, "--data-dir", "data", "--tls-port", 70000, cwd=tmp_path)
    assert_one_line_error(result, 2, "setting tls_port: Input should be less than or equal")
    assert "option --tls-port" in result.stderr


def test_selfsigned_into_a_file_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    result = dicomflow("tls", "selfsigned", "taken", cwd=tmp_path)
    assert_one_line_error(result, 1, 'Cannot write into "taken"')
