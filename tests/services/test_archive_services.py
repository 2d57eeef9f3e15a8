"""End to end: registry services read their series from the archive and return results
through it, so a worker shares nothing with the node but the datastore URL.

A real redis-server, one ``dicomflow worker`` started in its own folder, the node's
datastore a bucket on moto's S3-compatible server, and dcmtk's ``storescp`` receiving
the bone-mask series of the example services.
"""

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pydicom
import pytest

from dicomflow.cod import CODObject
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.queue.backend import open_backend
from dicomflow.services.consumer import ServiceScheduler
from dicomflow.services.install import install
from dicomflow.settings import build_settings
from support import RedisServer, StoreSCPPeer, storescu, wait_for

EXAMPLES = Path(__file__).parents[2] / "examples" / "services"
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")


@pytest.fixture
def remote_worker(
    s3_bucket: str, redis_server: RedisServer, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker in a folder of its own, started after the S3 endpoint is in the environment."""
    folder = tmp_path / "remote"
    folder.mkdir()
    command = [DICOMFLOW, "worker", "--queue", redis_server.url(), "--name", "remote"]
    process = subprocess.Popen(command, cwd=folder)
    yield process
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def reads_and_writes(kwargs: dict[str, object]) -> dict[str, object]:
    """A job's kwargs but ``protected``, the node's folders it may not write."""
    return {key: value for key, value in kwargs.items() if key != "protected"}


def test_services_read_the_archive_on_a_remote_worker(
    tmp_path: Path,
    s3_bucket: str,
    redis_server: RedisServer,
    remote_worker: subprocess.Popen[bytes],
    storescp: StoreSCPPeer,
) -> None:
    root = tmp_path / "services"
    install("measure", EXAMPLES / "measure", root)
    install("mask", EXAMPLES / "mask", root)
    url, datastore, data = redis_server.url(), f"{s3_bucket}/dicomflow", tmp_path / "node"
    settings = build_settings(
        port=0,
        data_directory=data,
        endpoints=[storescp.endpoint()],
        services_directory=root,
        queue_url=url,
        queue_workers=0,
        archive_datastore=datastore,
        series_quiet_period_s=0.5,
        export_backoff_s=0.1,
    )
    consumer = Consumers(ServiceScheduler(root, url), ArchiveScheduler(datastore, url))
    node = Node(None, settings, consumer)
    node.start()
    series = make_ct_series(4)
    try:
        storescu(node.port, write_series(series, tmp_path / "ct"))
        wait_for(lambda: len(storescp.files()) == 4, 120, "the mask series at storescp")
        wait_for(lambda: not list((data / "series" / "rounds").iterdir()), 30, "the batch end")
    finally:
        node.stop()
    masks = [pydicom.dcmread(path) for path in storescp.files()]
    assert {m.ImageComments for m in masks} == {"threshold 300 HU"}
    assert {m.SeriesInstanceUID for m in masks} != {series[0].SeriesInstanceUID}
    assert not any((data / "series" / "failed").iterdir())

    jobs = {job.name: job for job in open_backend(url).jobs()}
    assert set(jobs) == {"archive", "measure", "mask"}
    assert {job.worker for job in jobs.values()} == {"remote"}
    for name in ("measure", "mask"):
        kwargs = jobs[name].kwargs
        assert jobs["archive"].id in jobs[name].depends_on
        assert "input_dir" not in kwargs and "output_root" not in kwargs
        assert str(data) not in repr(reads_and_writes(kwargs))  # no path of the node's disk
        assert kwargs["archive_input"]["datastore"] == datastore
        assert kwargs["protected"] == [str(data.resolve())]  # only as a place not to write
    archive_kwargs = jobs["archive"].kwargs
    assert "input_url" in archive_kwargs and str(data) not in repr(reads_and_writes(archive_kwargs))

    archived = CODObject(
        datastore, str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID), lock=False
    )
    assert archived.list_instances() == sorted(str(ds.SOPInstanceUID) for ds in series)
    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    assert fs.find("archive/dicomflow/staging") == []  # inputs and results were cleaned up
