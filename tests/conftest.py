"""Shared fixtures (the helpers behind them are in ``support.py``)."""

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dicomflow.node.node import Node
from support import DCMTK_TOOLS, NodeFactory, RedisServer, StoreSCPPeer


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
def make_node(tmp_path: Path) -> Iterator[NodeFactory]:
    """Start in-process nodes for pipeline classes; all are stopped afterwards."""
    started: list[Any] = []

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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()
