"""What the node calls when a series is stable: schedule the registry's jobs for it.

The node stores the series' instances in a folder of its own and calls
:meth:`ServiceScheduler.schedule`. Without an archive the jobs receive
``input_dir`` (that folder) and ``output_root`` (the worker then writes to
``output_dir``, ``output_root/{jobName}``, whose DICOM files the node sends to its
endpoints when the job finishes): the workers share the node's filesystem.

When the node archives (``archived`` given), the jobs depend on the series'
archive job and receive no path of the node: ``archive_input`` (datastore URL,
study, series and instance UIDs; the runner fetches the instances into a
temporary ``input_dir``) and ``output_url`` (a staging prefix of the datastore
where the runner uploads ``output_dir``; the node fetches it when the job
finishes). A worker on another machine then needs only the datastore URL.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomflow.cod.transfer import ArchivedSeries, staging_url
from dicomflow.queue.backend import Backend, PerThreadBackend
from dicomflow.services.headers import HEADER_FIELDS, series_headers
from dicomflow.services.registry import Registry
from dicomflow.services.scheduler import schedule_series
from dicomflow.services.stages import SchedulerSettings

logger = logging.getLogger(__name__)


@dataclass
class ScheduledJobs:
    """The jobs scheduled for one series (ids by job name) and the errors met."""

    job_ids: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


class ServiceScheduler:
    """Schedules the installed services' jobs for stable series on the queue at ``queue_url``.

    The queue is opened on first use, once per thread (SQLite connections stay on the
    thread that opened them).
    """

    def __init__(
        self, root: str | Path, queue_url: str, header_fields: Sequence[str] = HEADER_FIELDS
    ) -> None:
        self.registry = Registry(root)
        self.queue_url = queue_url
        self.header_fields = tuple(header_fields)
        self._backend = PerThreadBackend(queue_url)

    @property
    def backend(self) -> Backend:
        return self._backend.get()

    def schedule(
        self,
        instances_dir: Path,
        output_root: Path,
        series_key: str,
        archived: ArchivedSeries | None = None,
        after: Sequence[str] = (),
        *,
        protected: Sequence[Path] = (),
    ) -> ScheduledJobs:
        """Run the callbacks for the series in ``instances_dir`` and enqueue the chosen jobs.

        With ``archived``, the jobs read the series from the archive instead of
        ``instances_dir`` and leave their results in the datastore (see above); every
        job depends on the jobs of ``after``. Beneath ``protected`` the jobs may write
        only their own output (see :mod:`dicomflow.services.protection`).
        """
        report = self.registry.load()
        for service, error in report.errors.items():
            logger.error("service %s is broken and was skipped: %s", service, error)
        files = sorted(instances_dir.glob("*.dcm"))
        headers = self.headers(files, report.settings)
        outcome = schedule_series(
            report.jobs,
            headers,
            self.backend,
            series_key=series_key,
            base_kwargs=_job_inputs(instances_dir, output_root, archived, protected),
            after=after,
        )
        scheduled = ScheduledJobs()
        for item in outcome.outcomes:
            if item.job_id is not None:
                scheduled.job_ids[item.job_name] = item.job_id
            elif item.error:
                scheduled.errors[item.job_name] = item.error
        return scheduled

    def headers(
        self, files: Sequence[Path], settings: SchedulerSettings | None = None
    ) -> dict[str, Any]:
        """The series' headers (see :mod:`dicomflow.services.headers`): the fields of
        ``scheduler.json`` (all with ``fullTags``), else this scheduler's ``header_fields``.
        ``dcmpath`` among them copies the series to the registry's ``data/`` folder."""
        settings = settings or SchedulerSettings()
        fields = None if settings.full_tags else settings.header_fields
        if fields is None and not settings.full_tags:
            fields = self.header_fields
        share = fields is None or "dcmpath" in fields
        return series_headers(files, self.registry.data_dir if share else None, fields)


def _job_inputs(
    instances_dir: Path,
    output_root: Path,
    archived: ArchivedSeries | None,
    protected: Sequence[Path],
) -> dict[str, Any]:
    inputs: dict[str, Any] = {"protected": [str(path) for path in protected]} if protected else {}
    if archived is None:
        return {**inputs, "input_dir": str(instances_dir), "output_root": str(output_root)}
    url = staging_url(archived.datastore)
    return {**inputs, "archive_input": archived.to_kwargs(), "output_url": url}
