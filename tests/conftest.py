"""Shared fixtures (the helpers behind them are in ``support.py``)."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomflow.engine.node import Node
from dicomflow.tls import SelfSigned, make_self_signed
from support import (
    DCMTK_TOOLS,
    NodeFactory,
    PeerStarter,
    PostgresServer,
    RedisServer,
    StoreSCPPeer,
    wait_for_port,
)

# Nodes in tests (and the ones they start as processes) make a 16 MiB spool journal
# instead of the default 256 MiB: zeroing that for every node would cost minutes.
os.environ.setdefault("DICOMFLOW_SPOOL_JOURNAL_SEGMENT_BYTES", str(16 * 1024 * 1024))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [tool for tool in DCMTK_TOOLS if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(f"dcmtk tools missing: {missing}; run `make test` to install them")


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[StoreSCPPeer]:
    peer = StoreSCPPeer(tmp_path / "pacs")
    yield peer
    peer.stop()


@pytest.fixture
def storescp_on(tmp_path: Path) -> Iterator[PeerStarter]:
    """Start dcmtk ``storescp`` on a given port (an endpoint that was down comes up)."""

    processes: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> Path:
        folder = tmp_path / "pacs"
        folder.mkdir(exist_ok=True)
        command = ["storescp", "-aet", "PACS", "-od", str(folder), "+xa", str(port)]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        wait_for_port(port)
        return folder

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[NodeFactory]:
    """Start in-process nodes for pipeline classes; all are stopped afterwards."""
    started: list[Any] = []
    (tmp_path / "records").mkdir()  # see sample_pipelines.records_directory

    def factory(pipeline_class: type, **overrides: Any) -> Node:
        overrides.setdefault("port", 0)
        overrides.setdefault("data_directory", tmp_path / "data")
        overrides.setdefault("export_backoff_s", 0.1)
        pipeline = pipeline_class(start=False, **overrides)
        pipeline.open(blocking=False, configure_logs=False)
        started.append(pipeline)
        node: Node = pipeline.node
        return node

    yield factory
    for pipeline in started:
        pipeline.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL for the session; tests take their own database of it."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def server_pair(tmp_path: Path) -> SelfSigned:
    """A PACS's self-signed certificate and key (DICOM TLS tests)."""
    return make_self_signed(tmp_path / "server", common_name="pacs")


@pytest.fixture
def client_pair(tmp_path: Path) -> SelfSigned:
    """The sender's self-signed certificate and key, for mutual TLS."""
    return make_self_signed(tmp_path / "client", common_name="client")


@pytest.fixture
def tls_pacs(tmp_path: Path, server_pair: SelfSigned) -> Iterator[StoreSCPPeer]:
    """dcmtk ``storescp +tls`` with ``server_pair``, not asking for a client certificate."""
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair)
    yield peer
    peer.stop()


@pytest.fixture
def mutual_pacs(
    tmp_path: Path, server_pair: SelfSigned, client_pair: SelfSigned
) -> Iterator[StoreSCPPeer]:
    """dcmtk ``storescp +tls`` requiring ``client_pair``'s certificate (mutual TLS)."""
    peer = StoreSCPPeer(tmp_path / "mutual", tls=server_pair, client_ca=client_pair.certificate)
    yield peer
    peer.stop()
