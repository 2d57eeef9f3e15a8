"""Fixtures for the services tests: service folders and an empty registry root."""

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
