"""Fixtures for the services tests: service folders and an empty registry root."""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_files import CALLBACKS, WORKER, AddService, ServiceFolder, settings_text, write_files


@pytest.fixture
def service_folder(tmp_path: Path) -> ServiceFolder:
    """Write an installable service (``registry/`` + ``module/``) and return its folder."""

    def make(
        name: str,
        settings: Any,
        callbacks: str = CALLBACKS,
        module: dict[str, str] | None = None,
    ) -> Path:
        folder = tmp_path / "sources" / name
        registry = {"settings.json": settings_text(settings), "callbacks.py": callbacks}
        write_files(folder / "registry", registry)
        write_files(folder / "module", {"work.py": WORKER} if module is None else module)
        (folder / "module").mkdir(parents=True, exist_ok=True)
        return folder

    return make


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty registry root."""
    folder = tmp_path / "root"
    folder.mkdir()
    return folder


@pytest.fixture
def add_service(root: Path) -> AddService:
    """Put a service straight into ``root`` (no installer): registry/ and modules/ halves."""

    def add(
        name: str,
        settings: Any,
        callbacks: str = CALLBACKS,
        module: dict[str, str] | None = None,
    ) -> None:
        registry = {"settings.json": settings_text(settings), "callbacks.py": callbacks}
        write_files(root / "registry" / name, registry)
        write_files(root / "modules" / name, {"work.py": WORKER} if module is None else module)

    return add


S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    """A bucket on moto's S3-compatible server (127.0.0.1, OS-assigned port); its URL.

    The endpoint is given as users give it, by ``AWS_ENDPOINT_URL`` in the environment,
    which the worker processes started afterwards inherit.
    """
    import fsspec
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    environment = {**S3_ENVIRONMENT, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    S3FileSystem.clear_instance_cache()
    fsspec.filesystem("s3").mkdir("archive")
    yield "s3://archive"
    S3FileSystem.clear_instance_cache()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()
