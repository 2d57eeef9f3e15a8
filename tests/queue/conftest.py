"""Queue fixtures: a real Redis server, both backends, worker processes."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from queue_support import TEST_OPTIONS, WorkerProcess

from dicomflow.queue import Backend, open_backend
from support import RedisServer


@pytest.fixture
def redis(redis_server: RedisServer) -> str:
    """A fresh ``redis-server`` on a free loopback port, without persistence: its URL."""
    return redis_server.url()


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue/jobs.db?{TEST_OPTIONS}"
    return f"{request.getfixturevalue('redis')}?{TEST_OPTIONS}"


@pytest.fixture
def backend(queue_url: str) -> Iterator[Backend]:
    opened = open_backend(queue_url)
    yield opened
    opened.close()


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(queue_url: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start worker processes for the test's queue; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(name: str = "worker-1", *, burst: bool = False) -> WorkerProcess:
        worker = WorkerProcess(queue_url, name, tmp_path / f"{name}.log", burst=burst)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
