"""Queue fixtures: a real Redis server, both backends, worker processes."""

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from queue_support import TEST_OPTIONS, WorkerProcess

from dicomflow.queue import Backend, open_backend


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"redis-server does not listen on port {port}")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[str]:
    """A fresh ``redis-server`` on a free loopback port, without persistence: its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed; `make test` installs it (Debian redis-server).")
    port = _free_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
