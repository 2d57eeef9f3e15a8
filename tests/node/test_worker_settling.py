"""Settling a dead local worker's jobs never takes the node down when the queue's disk
cannot be written (full, or read-only): the heartbeat check settles them later."""

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomflow.engine.worker_processes import _settle_jobs_of, _settle_jobs_of_gone
from dicomflow.queue.embedded.backend import EmbeddedBackend
from support import small_filesystem


@pytest.fixture
def read_only_queue(tmp_path: Path) -> Iterator[str]:
    try:
        with small_filesystem(tmp_path / "disk", "4m") as mount_point:
            url = f"sqlite:///{mount_point / 'queue.db'}"
            EmbeddedBackend(url).close()
            subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
            yield url
    except OSError as exc:
        pytest.skip(str(exc))


def test_settling_on_a_disk_that_cannot_be_written_is_a_warning(
    read_only_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomflow.engine.worker_processes"):
        _settle_jobs_of_gone(read_only_queue)
        _settle_jobs_of(read_only_queue, "node-1-0")

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert all("cannot be settled now" in text for text in warnings)
