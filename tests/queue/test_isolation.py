"""One attempt in its own process, run in this process's fork server (no queue)."""

import contextlib
import os
import re
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_support import wait_gone

from dicomflow.queue.isolation import Isolation
from dicomflow.queue.job import Job, JobStatus
from dicomflow.queue.options import QueueOptions
from support import fill_filesystem, small_filesystem


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


@pytest.mark.parametrize(
    ("function", "retryable"),
    [("jobs:refuse", False), ("jobs:give_up", False), ("jobs:fail_times", True)],
)
def test_a_permanent_error_is_not_retryable(
    isolation: Isolation, tmp_path: Path, function: str, retryable: bool
) -> None:
    kwargs: dict[str, object] = {"path": str(tmp_path / "runs")}
    if function == "jobs:fail_times":
        kwargs["failures"] = 1
    outcome = isolation.run(Job(function, kwargs=kwargs, timeout_s=30))

    assert outcome.status is JobStatus.FAILED
    assert outcome.retryable is retryable
    assert ("not retried" in (outcome.error or "")) is not retryable


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


def test_a_job_over_its_memory_limit_fails_with_a_clear_error(tmp_path: Path) -> None:
    options = QueueOptions(check_s=0.05, memory_limit_bytes=384 * 1024 * 1024)
    with Isolation(options) as running:
        over = running.run(Job("jobs:allocate", kwargs={"megabytes": 512}, timeout_s=60))
        under = running.run(Job("jobs:allocate", kwargs={"megabytes": 64}, timeout_s=60))

    assert over.status is JobStatus.FAILED
    assert over.error is not None
    assert "exceeded its memory limit of 402653184 bytes" in over.error
    assert "job_memory_limit_bytes" in over.error
    assert under.status is JobStatus.FINISHED and under.result == 64 * 1024 * 1024


def test_the_default_memory_limit_is_half_the_physical_memory() -> None:
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")

    assert QueueOptions().job_memory_limit() == physical // 2
    assert QueueOptions(memory_limit_bytes=0).job_memory_limit() == 0


def test_a_daemon_that_left_the_process_group_dies_with_the_job(
    isolation: Isolation, tmp_path: Path
) -> None:
    pid_file = tmp_path / "daemon.pid"
    outcome = isolation.run(Job("jobs:escape", kwargs={"pid_file": str(pid_file)}, timeout_s=60))

    assert outcome.status is JobStatus.FINISHED
    daemon = int(pid_file.read_text())
    try:
        assert wait_gone(daemon, timeout_s=0.5), "the job's daemon is still running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)


def test_a_daemon_of_a_job_that_timed_out_is_killed_too(
    isolation: Isolation, tmp_path: Path
) -> None:
    pid_file = tmp_path / "daemon.pid"
    job = Job("jobs:escape_and_hang", kwargs={"pid_file": str(pid_file)}, timeout_s=2)
    outcome = isolation.run(job)

    assert outcome.status is JobStatus.TIMED_OUT
    daemon = int(pid_file.read_text())
    try:
        assert wait_gone(daemon, timeout_s=0.5), "the job's daemon is still running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)


def test_output_past_the_limit_keeps_its_head_and_tail(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    options = QueueOptions(check_s=0.05, log_dir=str(logs), output_limit_bytes=1024 * 1024)
    with Isolation(options) as running:
        outcome = running.run(Job("jobs:shout", kwargs={"megabytes": 8}, timeout_s=60))

    assert outcome.status is JobStatus.FINISHED
    kept = next(logs.iterdir())
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert kept.stat().st_size < 1024 * 1024 + 1024
    text = kept.read_text()
    assert text.startswith("       0 x")
    assert text.endswith("the last line\n")
    left_out = re.search(r"\[dicomflow: (\d+) bytes of output left out here", text)
    assert left_out is not None
    assert int(left_out.group(1)) + 1024 * 1024 == _shout_size(8)
    assert outcome.log_tail is not None and outcome.log_tail.endswith("the last line")


def _shout_size(megabytes: int) -> int:
    lines = megabytes * 1024 * 1024 // 100
    return lines * 100 + len("the last line\n")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, full."""
    try:
        with small_filesystem(tmp_path / "disk", "1m") as mount_point:
            fill_filesystem(mount_point)
            yield mount_point
    except OSError as exc:
        pytest.skip(str(exc))


def test_a_log_that_cannot_be_written_loses_the_output_not_the_job(full_disk: Path) -> None:
    with Isolation(QueueOptions(check_s=0.05, log_dir=str(full_disk))) as running:
        outcome = running.run(Job("jobs:chatty", kwargs={"lines": 10_000}, timeout_s=60))
        again = running.run(Job("jobs:chatty", kwargs={"lines": 10}, timeout_s=60))

    assert outcome.status is JobStatus.FINISHED and outcome.result == 10_000
    assert again.status is JobStatus.FINISHED
