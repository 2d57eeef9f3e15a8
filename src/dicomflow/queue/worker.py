"""Running a worker for any queue URL, from the CLI or as ``python -m dicomflow.queue``.

::

    python -m dicomflow.queue sqlite:///var/lib/dicomflow/jobs.db
    python -m dicomflow.queue "redis://queue-host:6379/0?heartbeat_s=2" --name gpu-1

The job functions must be importable by the worker (``PYTHONPATH``).
"""

import argparse
import logging
import os
import secrets
import socket
from pathlib import Path

from dicomflow.logs import configure_logging

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def default_worker_name() -> str:
    """A name no other live worker has: host, pid and a random suffix."""
    return f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(3)}"


def run_worker(url: str, *, name: str | None = None, burst: bool = False) -> None:
    """Run a worker of the queue at ``url`` until it is stopped (or, with ``burst``, idle)."""
    from dicomflow.queue.backend import open_backend

    backend = open_backend(url)
    try:
        backend.worker(name=name).work(burst=burst)
    finally:
        backend.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dicomflow.queue", description="Run a dicomflow queue worker."
    )
    parser.add_argument("url", help="queue URL: sqlite:///path/jobs.db or redis://host:port/db")
    parser.add_argument("--name", default=None, help="worker name (default: host.pid.random)")
    parser.add_argument("--burst", action="store_true", help="stop when no job is left")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--log-file", type=Path, help="log here (rotated weekly, 8 kept) instead of to stderr"
    )
    arguments = parser.parse_args(argv)
    if arguments.log_file is not None:
        configure_logging(arguments.log_level, arguments.log_file, stderr=False)
    else:
        logging.basicConfig(level=arguments.log_level.upper(), format=LOG_FORMAT)
    try:
        run_worker(arguments.url, name=arguments.name, burst=arguments.burst)
    except KeyboardInterrupt:
        logger.info("worker stopped")
