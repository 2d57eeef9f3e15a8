"""A node receiving over DICOM TLS: settings decide which port speaks what; dcmtk peers."""

import logging
import socket
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sample_pipelines import MARK, CopyPipeline

from dicomflow import tls
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.errors import TLSConfigurationError
from dicomflow.tls import SelfSigned
from support import StoreSCPPeer, free_port, storescu, wait_for


@pytest.fixture(scope="module")
def node_pair(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    return tls.make_self_signed(tmp_path_factory.mktemp("node-tls"), common_name="node")


@pytest.fixture(scope="module")
def client_pair(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    return tls.make_self_signed(tmp_path_factory.mktemp("client-tls"), common_name="client")


def tls_settings(node_pair: SelfSigned, client_pair: SelfSigned, **more: Any) -> dict[str, Any]:
    """Mutual TLS: the node's pair, and the client's certificate as the trusted CA."""
    return {
        "tls_certificate": node_pair.certificate,
        "tls_private_key": node_pair.private_key,
        "tls_ca_certificates": client_pair.certificate,
        **more,
    }


def dcmtk_tls(
    tool: str, port: int, client: SelfSigned, node: SelfSigned, files: list[Path] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [tool, "-to", "20", "-aet", "TLSSCU", "-aec", "DICOMFLOW"]
    command += [
        "+tls",
        str(client.private_key),
        str(client.certificate),
        "+cf",
        str(node.certificate),
    ]
    command += ["127.0.0.1", str(port), *map(str, files or [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def echoscu(port: int) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-to", "20", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths}


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("receiver", ["lean", "pynetdicom"])
def test_with_a_certificate_the_port_speaks_tls_only(
    receiver: str,
    make_node: Any,
    storescp: StoreSCPPeer,
    node_pair: SelfSigned,
    client_pair: SelfSigned,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = write_series(make_ct_series(3, rows=32, columns=32), tmp_path / "series")
    caplog.set_level(logging.INFO, logger="dicomflow")
    settings = tls_settings(node_pair, client_pair, receiver=receiver)
    node: Node = make_node(CopyPipeline, endpoints=[storescp.endpoint()], **settings)
    assert node.tls_port == node.port
    assert f"127.0.0.1:{node.port} (DICOM TLS, mutual)" in caplog.text
    result = dcmtk_tls("storescu", node.port, client_pair, node_pair, files)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(storescp.files()) == len(files), what="results at storescp")
    assert uids(storescp.files()) == uids(files)
    assert {pydicom.dcmread(path).ImageComments for path in storescp.files()} == {MARK}

    assert echoscu(node.port).returncode != 0  # plain DICOM is refused, logged, counted
    wait_for(lambda: node.counters.refused == 1, 10, "the refusal to be counted")
    assert "TLS handshake failed" in caplog.text


def test_with_a_tls_port_the_node_listens_plain_and_tls_at_once(
    make_node: Any,
    storescp: StoreSCPPeer,
    node_pair: SelfSigned,
    client_pair: SelfSigned,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = write_series(make_ct_series(2, rows=32, columns=32), tmp_path / "plain")
    secure = write_series(make_ct_series(2, rows=32, columns=32), tmp_path / "secure")
    caplog.set_level(logging.INFO, logger="dicomflow")
    settings = tls_settings(node_pair, client_pair, tls_port=0)
    node: Node = make_node(CopyPipeline, endpoints=[storescp.endpoint()], **settings)
    tls_port = node.tls_port
    assert tls_port is not None and tls_port != node.port
    expected = f"127.0.0.1:{node.port} (plain) and 127.0.0.1:{tls_port} (DICOM TLS, mutual)"
    assert expected in caplog.text
    storescu(node.port, plain)
    result = dcmtk_tls("storescu", tls_port, client_pair, node_pair, secure)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(storescp.files()) == 4, what="results of both ports at storescp")
    assert uids(storescp.files()) == uids(plain + secure)
    assert echoscu(tls_port).returncode != 0  # the TLS port speaks TLS only

    node.stop()
    assert refuses_connections(node.port) and refuses_connections(tls_port)


def test_a_tls_file_that_cannot_be_used_stops_the_start_and_frees_the_data_directory(
    make_node: Any, node_pair: SelfSigned, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TLSConfigurationError, match=f'tls_certificate "{missing}" cannot be read'):
        make_node(CopyPipeline, tls_certificate=missing, tls_private_key=node_pair.private_key)
    node: Node = make_node(CopyPipeline)  # the same data directory
    assert echoscu(node.port).returncode == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tls_port": 0}, "tls_port is set but tls_certificate is not"),
        ({"tls_private_key": Path("key.pem")}, "tls_certificate is not set"),
    ],
    ids=["port-without-certificate", "key-without-certificate"],
)
def test_tls_settings_without_a_certificate_are_refused(
    make_node: Any, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(TLSConfigurationError, match=message):
        make_node(CopyPipeline, **settings)


def test_tls_port_equal_to_port_is_refused(
    make_node: Any, node_pair: SelfSigned, client_pair: SelfSigned
) -> None:
    port = free_port()
    settings = tls_settings(node_pair, client_pair, port=port, tls_port=port)
    with pytest.raises(TLSConfigurationError, match=f"tls_port {port} is also port"):
        make_node(CopyPipeline, **settings)
