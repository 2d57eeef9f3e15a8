"""Fixtures of the COD tests: one contract suite over a local, an in-memory and an S3
datastore.

The S3 datastore is a bucket on moto's S3-compatible server (``ThreadedMotoServer``,
started once per session on 127.0.0.1 with an OS-assigned port) reached through s3fs.
The endpoint is given the way a user gives it, by ``AWS_ENDPOINT_URL`` in the
environment, which child processes inherit too.
"""

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from cod_support import BUCKET, Series, SeriesFactory, make_series

from support import s3_server


def _clear_memory() -> None:
    memory = fsspec.filesystem("memory")
    memory.store.clear()
    memory.pseudo_dirs[:] = [""]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto) with the bucket ``cod-tests``; its URL."""
    with s3_server(BUCKET) as url:
        yield url


@pytest.fixture(params=["local", "memory", "s3"])
def datastore(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A datastore URL: a local directory, a fresh ``memory://`` root or an S3 prefix."""
    _clear_memory()
    if request.param == "local":
        yield str(tmp_path / "datastore")
    elif request.param == "memory":
        yield f"memory://cod-{uuid.uuid4().hex}"
    else:
        request.getfixturevalue("s3_endpoint")
        yield f"s3://{BUCKET}/cod-{uuid.uuid4().hex}"
    _clear_memory()


@pytest.fixture
def series(tmp_path: Path) -> SeriesFactory:
    """Write synthetic CT series under tmp_path (see ``cod_support.make_series``)."""

    def make(count: int, name: str = "src", **kwargs: object) -> Series:
        return make_series(tmp_path / name, count, **kwargs)

    return make
