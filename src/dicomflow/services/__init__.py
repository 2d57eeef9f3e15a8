"""Registry services (dcm-processor style): jobs declared in ``settings.json``, chosen per
series by callbacks, run by workers on the queue.

- :mod:`~dicomflow.services.definitions` reads and validates a service's ``settings.json``;
- :mod:`~dicomflow.services.graph` checks the job graph and orders it;
- :mod:`~dicomflow.services.stages` reads ``scheduler.json`` (the seed scheduler's
  settings: ``headerFields``, ``preServices``, ``postServices``);
- :mod:`~dicomflow.services.registry` loads the installed services with their callbacks;
- :mod:`~dicomflow.services.headers` builds a series' headers as the seed does;
- :mod:`~dicomflow.services.scheduler` asks the callbacks and enqueues one job graph a series;
- :mod:`~dicomflow.services.runner` runs a job's worker in the worker process;
- :mod:`~dicomflow.services.install` installs, removes, backs up and lists services.
"""

from dicomflow.services.definitions import load_settings, read_settings
from dicomflow.services.install import backup, install, list_services, remove
from dicomflow.services.job_spec import JobSpec
from dicomflow.services.registry import LoadReport, RegisteredJob, Registry
from dicomflow.services.runner import run_service_job
from dicomflow.services.scheduler import Decision, JobOutcome, ScheduleReport, schedule_series

__all__ = [
    "Decision",
    "JobOutcome",
    "JobSpec",
    "LoadReport",
    "RegisteredJob",
    "Registry",
    "ScheduleReport",
    "backup",
    "install",
    "list_services",
    "load_settings",
    "read_settings",
    "remove",
    "run_service_job",
    "schedule_series",
]
