"""One node per data directory."""

import os
from pathlib import Path

import pytest
from sample_pipelines import HoldingPipeline

from dicomflow.engine.datalock import LOCK_FILE, DataDirectoryLock
from dicomflow.errors import DataDirectoryInUseError


def test_a_second_node_on_the_same_data_directory_is_refused(make_node, tmp_path: Path):
    first = make_node(HoldingPipeline)
    with pytest.raises(
        DataDirectoryInUseError, match=rf"in use by another node \(process {os.getpid()}\)"
    ):
        make_node(HoldingPipeline)
    assert first.counters.received == 0
    first.stop()
    again = make_node(HoldingPipeline)  # free once the first stopped
    assert again.journal is not None and again.journal.is_open


def test_the_lock_is_released_by_the_process_ending_and_the_file_is_harmless(tmp_path: Path):
    root = tmp_path / "data"
    lock = DataDirectoryLock(root)
    lock.acquire()
    assert (root / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()
    again = DataDirectoryLock(root)  # the file stays; the lock is free
    again.acquire()
    assert again.held
    again.release()
