"""Fixtures of the COD tests: one contract suite over a local, an in-memory and an S3
datastore.

The S3 datastore is a bucket on moto's S3-compatible server (``ThreadedMotoServer``,
started once per session on 127.0.0.1 with an OS-assigned port) reached through s3fs.
The endpoint is given the way a user gives it, by ``AWS_ENDPOINT_URL`` in the
environment, which child processes inherit too.
"""

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
from cod_support import BUCKET, Series, SeriesFactory, make_series

S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _clear_memory() -> None:
    memory = fsspec.filesystem("memory")
    memory.store.clear()
    memory.pseudo_dirs[:] = [""]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto) with the bucket ``cod-tests``; its URL."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    environment = {**S3_ENVIRONMENT, "AWS_ENDPOINT_URL": url}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    S3FileSystem.clear_instance_cache()
    fsspec.filesystem("s3").mkdir(BUCKET)
    yield url
    S3FileSystem.clear_instance_cache()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    server.stop()


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
