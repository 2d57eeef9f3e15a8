"""Fixtures of the COD tests: one contract suite over a local and an in-memory datastore."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from cod_support import Series, SeriesFactory, make_series


def _clear_memory() -> None:
    memory = fsspec.filesystem("memory")
    memory.store.clear()
    memory.pseudo_dirs[:] = [""]


@pytest.fixture(params=["local", "memory"])
def datastore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A datastore URL: a local directory or a fresh ``memory://`` root."""
    _clear_memory()
    if request.param == "local":
        yield str(tmp_path / "datastore")
    else:
        yield f"memory://cod-{uuid.uuid4().hex}"
    _clear_memory()


@pytest.fixture
def series(tmp_path: Path) -> SeriesFactory:
    """Write synthetic CT series under tmp_path (see ``cod_support.make_series``)."""

    def make(count: int, name: str = "src", **kwargs: object) -> Series:
        return make_series(tmp_path / name, count, **kwargs)

    return make
