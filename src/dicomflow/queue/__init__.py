"""Jobs on a queue: one model, one backend protocol, two backends chosen by URL.

- ``sqlite:///path/to/jobs.db`` — the embedded default (SQLite in WAL mode,
  local worker processes);
- ``redis://host:port/db`` — RQ on a Redis server, for workers on many machines.

Both run a job the same way (:mod:`dicomflow.queue.isolation`): in its own
process and temporary working directory, with a timeout that kills it, its
output captured, and its failure recorded on the job.

The names below are imported on first use: the workers' fork servers import
this package, and every module a fork server holds makes each fork dearer.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomflow.queue.backend import Backend, Worker, open_backend
    from dicomflow.queue.job import Job, JobStatus, Priority
    from dicomflow.queue.options import QueueOptions
    from dicomflow.queue.worker import run_worker

EXPORTS = {
    "Backend": "dicomflow.queue.backend",
    "Worker": "dicomflow.queue.backend",
    "open_backend": "dicomflow.queue.backend",
    "Job": "dicomflow.queue.job",
    "JobStatus": "dicomflow.queue.job",
    "Priority": "dicomflow.queue.job",
    "QueueOptions": "dicomflow.queue.options",
    "run_worker": "dicomflow.queue.worker",
}

__all__ = [
    "Backend",
    "Job",
    "JobStatus",
    "Priority",
    "QueueOptions",
    "Worker",
    "open_backend",
    "run_worker",
]


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dicomflow.queue' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
