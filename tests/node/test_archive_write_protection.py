"""An archive job writes its datastore, even one inside the data directory, and nothing
else of the node (Landlock): the archive job's own code is run, then what a compromised
decoder in its process could try."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine import series_archive as archive
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.queue import JobStatus, open_backend
from dicomflow.settings import build_settings
from support import storescu, wait_for

PROBE = "archive_probe:archive_and_vandalise"


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """An archiving node whose archive jobs run the probe; its datastore in the data
    directory."""
    monkeypatch.setattr(archive, "ARCHIVE_FUNCTION", PROBE)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # for the worker processes
    data = tmp_path / "data"
    settings = build_settings(
        port=0, data_directory=data, series_quiet_period_s=0.3, queue_workers=1
    )
    scheduler = ArchiveScheduler(str(data / "archive"), settings.resolved_queue_url())
    started = Node(None, settings, Consumers(scheduler))
    started.start()
    yield started
    started.stop()


def test_an_archive_job_writes_only_its_datastore(node: Node, tmp_path: Path) -> None:
    data = tmp_path / "data"
    storescu(node.port, write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct"))
    backend = open_backend(node.watcher.url)
    try:
        wait_for(lambda: backend.jobs(JobStatus.FINISHED), 60, "the archive job to finish")
        [job] = backend.jobs(JobStatus.FINISHED)
    finally:
        backend.close()

    assert job.function == PROBE
    assert job.result["archived"]["new"] == 2
    assert job.result["attempts"] == dict.fromkeys(job.result["attempts"], "refused")
    assert len(job.result["attempts"]) == 5
    assert (data / "journal" / "segment.journal").stat().st_size > 0
    assert (data / "queue.db").stat().st_size > 0
    assert not (data / "planted").exists()
