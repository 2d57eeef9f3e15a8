"""Fixtures for the services tests: service folders and an empty registry root."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_files import CALLBACKS, WORKER, AddService, ServiceFolder, settings_text, write_files

from support import s3_server


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


@pytest.fixture
def s3_bucket() -> Iterator[str]:
    """A bucket on moto's S3-compatible server (127.0.0.1, OS-assigned port); its URL.

    The endpoint is given as users give it, by ``AWS_ENDPOINT_URL`` in the environment,
    which the worker processes started afterwards inherit.
    """
    with s3_server("archive"):
        yield "s3://archive"
