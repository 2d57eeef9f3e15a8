"""Jobs on a queue: one model, one backend protocol, two backends chosen by URL.

- ``sqlite:///path/to/jobs.db`` — the embedded default (SQLite in WAL mode,
  local worker processes);
- ``redis://host:port/db`` — RQ on a Redis server, for workers on many machines.

Both run a job the same way (:mod:`dicomflow.queue.isolation`): in its own
process and temporary working directory, with a timeout that kills it, its
output captured, and its failure recorded on the job.
"""

from dicomflow.queue.backend import Backend, Worker, open_backend
from dicomflow.queue.job import Job, JobStatus, Priority
from dicomflow.queue.options import QueueOptions
from dicomflow.queue.worker import run_worker

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
