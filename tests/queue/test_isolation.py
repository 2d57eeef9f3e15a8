"""One attempt in its own process, run in this process's fork server (no queue)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomflow.queue.isolation import Isolation
from dicomflow.queue.job import Job, JobStatus
from dicomflow.queue.options import QueueOptions


@pytest.fixture
def isolation(tmp_path: Path) -> Iterator[Isolation]:
    with Isolation(QueueOptions(check_s=0.05, log_dir=str(tmp_path / "logs"))) as running:
        yield running


def test_output_of_any_size_never_blocks(isolation: Isolation, tmp_path: Path) -> None:
    outcome = isolation.run(Job("jobs:chatty", kwargs={"lines": 300_000}, timeout_s=60))

    assert outcome.status is JobStatus.FINISHED
    assert outcome.log_tail is not None and outcome.log_tail.endswith("written to stderr")
    kept = next((tmp_path / "logs").iterdir())
    assert kept.stat().st_size > 3_000_000


def test_poll_cancels_and_the_scratch_space_goes_away(isolation: Isolation, tmp_path: Path) -> None:
    calls: list[int] = []

    def poll() -> bool:
        calls.append(1)
        return len(calls) >= 3

    outcome = isolation.run(Job("jobs:hang", kwargs={"pid_file": str(tmp_path / "pids")}), poll)

    assert outcome.status is JobStatus.CANCELED and len(calls) == 3
    scratch = isolation._scratch
    isolation.close()
    assert scratch is not None and not scratch.exists()


def test_a_non_json_result_is_dropped_with_a_warning(isolation: Isolation) -> None:
    outcome = isolation.run(Job("builtins:object"))

    assert outcome.status is JobStatus.FINISHED and outcome.result is None
    assert "not JSON-serialisable" in (outcome.log_tail or "")
