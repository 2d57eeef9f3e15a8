"""Queue options carried in the queue URL."""

import pytest

from dicomflow.errors import QueueError
from dicomflow.queue.embedded.backend import database_path
from dicomflow.queue.options import QueueOptions, split_url


def test_options_are_taken_out_of_the_url() -> None:
    base, options = split_url(
        "sqlite:///tmp/q/jobs.db?heartbeat_s=0.5&preload=numpy,pydicom&log_dir=/var/log/j",
        keep_unknown=False,
    )
    assert base == "sqlite:///tmp/q/jobs.db"
    assert options == QueueOptions(
        heartbeat_s=0.5, preload=("numpy", "pydicom"), log_dir="/var/log/j"
    )


def test_redis_keeps_its_own_parameters() -> None:
    base, options = split_url(
        "redis://h:6379/0?socket_timeout=5&stale_after_s=9", keep_unknown=True
    )
    assert base == "redis://h:6379/0?socket_timeout=5"
    assert options.stale_after_s == 9.0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///x.db?colour=blue", 'unknown option "colour"'),
        ("sqlite:///x.db?poll_s=soon", 'option poll_s is "soon"; expected a number'),
        ("sqlite:///x.db?poll_s=0", "poll_s is 0.0; expected a number > 0"),
        ("sqlite:///x.db?synchronous=maybe", 'synchronous is "maybe"'),
    ],
)
def test_bad_options_are_named(url: str, message: str) -> None:
    with pytest.raises(QueueError, match=message):
        split_url(url, keep_unknown=False)


def test_sqlite_paths() -> None:
    assert str(database_path("sqlite:///abs/jobs.db")) == "/abs/jobs.db"
    assert str(database_path("sqlite:////abs/jobs.db")) == "/abs/jobs.db"
    with pytest.raises(QueueError, match=r"sqlite:///path/to/jobs\.db"):
        database_path("sqlite://")
