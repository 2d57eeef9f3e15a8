"""Archiving received series into a cloud-optimized DICOM datastore.

With ``archive_datastore`` set, every stable series becomes one queue job,
:func:`archive_series`, which appends the series' instances to the datastore
under the series lock (duplicates are skipped, conflicts recorded) and syncs
it. A job that cannot take the lock (another writer holds it) fails and is
retried with backoff; the instances stay in the node until it succeeds.
"""

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydicom import dcmread

from dicomflow.cod import CODObject, Instance
from dicomflow.errors import DicomflowError
from dicomflow.queue.backend import PerThreadBackend
from dicomflow.queue.job import Job, Priority

logger = logging.getLogger(__name__)

ARCHIVE_JOB = "archive"
ARCHIVE_FUNCTION = "dicomflow.node.archive:archive_series"
RETRIES = 5


class ArchiveError(DicomflowError, RuntimeError):
    """Some instances of a series could not be archived."""


class Scheduled:
    """The job scheduled for one series (see ``SeriesConsumer``)."""

    def __init__(self, job_ids: dict[str, str], errors: dict[str, str] | None = None) -> None:
        self.job_ids = job_ids
        self.errors = errors or {}


class ArchiveScheduler:
    """Schedules one archive job per stable series on the queue at ``queue_url``."""

    def __init__(self, datastore: str, queue_url: str) -> None:
        self.datastore = datastore
        self.queue_url = queue_url
        self._backend = PerThreadBackend(queue_url)

    def schedule(self, instances_dir: Path, output_root: Path, series_key: str) -> Scheduled:
        job = Job(
            function=ARCHIVE_FUNCTION,
            kwargs={"input_dir": str(instances_dir), "datastore": self.datastore},
            name=ARCHIVE_JOB,
            priority=Priority.LOW,
            retries=RETRIES,
            retry_backoff_s=2.0,
            meta={"kind": "archive", "series": series_key},
        )
        return Scheduled({ARCHIVE_JOB: self._backend.get().enqueue(job).id})


def archive_series(input_dir: str, datastore: str, **_: Any) -> dict[str, int]:
    """Queue job: append every instance of ``input_dir`` to its series in ``datastore``.

    Raises:
        ArchiveError: if an instance could not be stored (the others are kept).
        LockAcquisitionError: if another writer holds the series lock.
    """
    groups: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for path in sorted(Path(input_dir).glob("*.dcm")):
        header = dcmread(path, stop_before_pixels=True)
        key = (str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
        groups[key].append(Instance(dicom_uri=str(path)))
    totals = {"new": 0, "duplicates": 0, "conflicts": 0}
    for (study_uid, series_uid), instances in groups.items():
        with CODObject(
            datastore_path=datastore, study_uid=study_uid, series_uid=series_uid, lock=True
        ) as cod:
            result = cod.append(instances)
            cod.sync()
        if result.errors:
            failures = "; ".join(f"{i.dicom_uri}: {e}" for i, e in result.errors[:5])
            raise ArchiveError(f"Series {series_uid}: {len(result.errors)} error(s): {failures}")
        totals["new"] += len(result.new)
        totals["duplicates"] += len(result.duplicates)
        totals["conflicts"] += len(result.conflicts)
    logger.info("archived %s into %s: %s", input_dir, datastore, totals)
    return totals


class Consumers:
    """Several series consumers as one: every one schedules its jobs for each series."""

    def __init__(self, *consumers: Any) -> None:
        self.consumers = [consumer for consumer in consumers if consumer is not None]

    def schedule(self, instances_dir: Path, output_root: Path, series_key: str) -> Scheduled:
        combined = Scheduled({}, {})
        for consumer in self.consumers:
            scheduled = consumer.schedule(instances_dir, output_root, series_key)
            combined.job_ids.update(scheduled.job_ids)
            combined.errors.update(scheduled.errors)
        return combined
