"""Archiving received series into a cloud-optimized DICOM datastore.

With ``archive_datastore`` set, every stable series becomes one queue job,
:func:`archive_series`, which appends the series' instances to the datastore
under the series lock (duplicates are skipped, conflicts recorded) and syncs
it. A job that cannot take the lock (another writer holds it) fails and is
retried with backoff; the instances stay in the node until it succeeds. A job
whose instances de-identification refused fails at once, without retries
(:class:`~dicomflow.errors.ArchiveRefusedError`: they would be refused again).

:class:`Consumers` runs the archive first: the registry services' jobs of the
series then depend on its archive job and read the series from the archive
(see :mod:`dicomflow.services.consumer`); their results come back through a
staging prefix of the datastore, which :func:`collect_output` fetches into the
node when a job finishes. On the embedded queue the archive job reads the node's
folder; on Redis the node first copies the instances to a staging prefix of the
datastore, so a worker on another machine needs only the datastore URL (with
``archive_deid``, it copies their de-identified form only: see
:mod:`dicomflow.engine.archive_deid`).

A pipeline's :class:`~dicomflow.node.output.ArchiveOutput` becomes the same kind
of job (:meth:`ArchiveScheduler.schedule` with ``remove_input``): its folder
waits in ``archive-outbox/`` until the job has archived it, with retries, and a
job that failed for good can be retried from the dashboard. The job empties the
folder once everything in it is archived; the node removes the empty folder.

Archive jobs are the node's own code, but they parse and decode received data
(thumbnails), so with ``protected`` directories (the node's data directory) they too
may write nothing beneath them but what they need: a local datastore and, with
``remove_input``, the contents of the folder they archive. A local datastore that
contains the data directory leaves the job unprotected (with a warning in its log).
"""

import logging
import shutil
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]
from pydicom import Dataset, dcmread

from dicomflow.cod import CODObject, Instance
from dicomflow.cod.catalog import Catalog, default_catalog, open_catalog
from dicomflow.cod.query import SeriesDocument
from dicomflow.cod.transfer import (
    ArchivedSeries,
    download_folder,
    list_files,
    local_folder,
    remove_folder,
    staging_url,
    upload_folder,
)
from dicomflow.dicom.deid import Deidentifier, burned_in_reason
from dicomflow.dicom.keys import is_valid_uid, shorten
from dicomflow.engine.archive_deid import (
    ArchiveDeid,
    Gathered,
    archive_deid,
    deidentified_groups,
    stage_deidentified,
    staged_groups,
)
from dicomflow.engine.resubmit import retryable
from dicomflow.errors import ArchiveError, ArchiveRefusedError, CODError
from dicomflow.queue.backend import PerThreadBackend
from dicomflow.queue.job import Job, JobKind, Priority
from dicomflow.queue.landlock import protect_job
from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

ARCHIVE_JOB = "archive"
ARCHIVE_FUNCTION = "dicomflow.engine.series_archive:archive_series"
RETRIES = 5


class SeriesJobs:
    """The jobs scheduled for one series, by name, and the errors of those that could not
    be (see ``SeriesConsumer``)."""

    def __init__(self, job_ids: dict[str, str], errors: dict[str, str] | None = None) -> None:
        self.job_ids = job_ids
        self.errors = errors or {}


class ArchiveScheduler:
    """Schedules one archive job per stable series on the queue at ``queue_url``.

    On the embedded queue the job reads the series' folder in the node. On Redis,
    whose workers may run on other machines, the node first copies the instances to
    a staging prefix of the datastore (``{datastore}/staging/{token}/input``), which
    the job reads and removes once they are archived. The folder itself is kept (even
    with ``remove_input``) until its job has finished, so that a job lost with its queue
    can be scheduled again from it.

    With ``deid`` (``archive_deid``), the job de-identifies every instance before
    archiving it; on Redis the node does, before staging, so that the datastore never
    holds an original instance (see :mod:`dicomflow.engine.archive_deid`).
    """

    def __init__(
        self,
        datastore: str,
        queue_url: str,
        catalog: str | None = None,
        deid: ArchiveDeid | None = None,
    ) -> None:
        self.datastore = absolute_datastore(datastore)
        self.catalog = catalog or default_catalog(self.datastore)
        self.queue_url = queue_url
        self.stage_inputs = not queue_url.startswith("sqlite")
        self.deid = deid
        self._backend = PerThreadBackend(queue_url)

    @classmethod
    def from_settings(cls, settings: NodeSettings, datastore: str) -> "ArchiveScheduler":
        """The scheduler of the node's archive (or an archive output's ``datastore``):
        with ``archive_deid``, the de-identification settings are checked first (the key
        file made if it is the default one), so a wrong one stops the node's start."""
        catalog = settings.catalog_location() if datastore == settings.archive_datastore else None
        return cls(datastore, settings.resolved_queue_url(), catalog, archive_deid(settings))

    def schedule(
        self,
        instances_dir: Path,
        output_root: Path,
        series_key: str,
        *,
        remove_input: bool = False,
        protected: Sequence[Path] = (),
    ) -> SeriesJobs:
        """Enqueue the archive job of ``instances_dir``; with ``remove_input`` the job
        empties that folder once everything in it is archived. Beneath ``protected``
        the job may write only what it needs (see above)."""
        source: dict[str, Any]
        if self.stage_inputs:
            source = self._stage(instances_dir)  # the folder stays: see above
        else:
            source = {"input_dir": str(instances_dir), "remove_input": remove_input}
        if protected:
            source["protected"] = [str(path) for path in protected]
        job = Job(
            function=ARCHIVE_FUNCTION,
            kwargs={
                "input_dir": None,
                **source,
                "datastore": self.datastore,
                "catalog": self.catalog,
                **({"deid": self.deid.to_kwargs()} if self.deid is not None else {}),
            },
            name=ARCHIVE_JOB,
            priority=Priority.LOW,
            retries=RETRIES,
            retry_backoff_s=2.0,
            meta={"kind": JobKind.ARCHIVE, "series": series_key},
        )
        try:
            return SeriesJobs({ARCHIVE_JOB: self._backend.get().enqueue(job).id})
        except Exception:
            if "input_url" in source:
                remove_folder(source["input_url"])
            raise

    def _stage(self, instances_dir: Path) -> dict[str, Any]:
        """Copy the instances to a fresh staging prefix for the job: with ``deid`` their
        de-identified form only, the job told so (and given the refusals to report)."""
        url = f"{staging_url(self.datastore)}/input"
        if self.deid is None:
            upload_folder(instances_dir, url)
            return {"input_url": url}
        try:
            refused = stage_deidentified(instances_dir, url, self.deid.deidentifier())
        except Exception:
            remove_folder(url)
            raise
        return {"input_url": url, "input_deidentified": True, "refused": refused}

    def refusal(self, dataset: Dataset) -> str | None:
        """See :func:`archive_refusal`."""
        return archive_refusal(dataset)

    def archived(self, instances_dir: Path) -> ArchivedSeries | None:
        """The series of ``instances_dir`` as the archive will hold it (None if empty).

        Instances of another study than the first one's are left out.
        """
        if self.deid is not None:
            return self._archived_deid(instances_dir, self.deid)
        keys = {path.stem: _series_of(path) for path in sorted(instances_dir.glob("*.dcm"))}
        if not keys:
            return None
        study_uid, series_uid = next(iter(keys.values()))
        uids = tuple(uid for uid, key in keys.items() if key == (study_uid, series_uid))
        return ArchivedSeries(self.datastore, study_uid, series_uid, uids)

    def _archived_deid(self, instances_dir: Path, deid: ArchiveDeid) -> ArchivedSeries | None:
        """:meth:`archived` under the pseudonyms the job will give (instances it will
        refuse for burned-in annotation left out)."""
        deidentifier = deid.deidentifier()
        identities = []
        for path in sorted(instances_dir.glob("*.dcm")):
            header = dcmread(path, defer_size=1024)  # pixel data present, not read
            if burned_in_reason(header) is None or deidentifier.profile.pixel_cleaning:
                identities.append(deidentifier.identity(header))
        if not identities:
            return None
        key = (identities[0].study_uid, identities[0].series_uid)
        uids = tuple(i.sop_instance_uid for i in identities if (i.study_uid, i.series_uid) == key)
        return ArchivedSeries(self.datastore, *key, uids)


def archive_refusal(dataset: Dataset) -> str | None:
    """Why the archive could not file ``dataset`` by study and series (None if it can):
    a missing, empty or invalid StudyInstanceUID or SeriesInstanceUID. An archiving node
    refuses such an instance when it arrives instead of acknowledging it."""
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        value = dataset.get(keyword)
        if value is None or str(value) == "":
            return f"The instance has no {keyword}; the archive files instances by it."
        if not is_valid_uid(str(value)):
            return (
                f'The instance has {keyword} "{shorten(value)}", which is not a valid DICOM'
                " UID; the archive cannot file it."
            )
    return None


def absolute_datastore(datastore: str) -> str:
    """A local datastore as an absolute path (jobs run in their own working directory)."""
    return datastore if "://" in datastore else str(Path(datastore).resolve())


def _series_of(path: Path | str) -> tuple[str, str]:
    with fsspec.open(str(path), "rb") as file:
        header = dcmread(
            file, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"]
        )
    return str(header.StudyInstanceUID), str(header.SeriesInstanceUID)


def archive_series(
    input_dir: str | None,
    datastore: str,
    input_url: str | None = None,
    remove_input: bool = False,
    thumbnail: bool = True,
    protected: list[str] | None = None,
    catalog: str | None = None,
    deid: dict[str, Any] | None = None,
    input_deidentified: bool = False,
    refused: list[str] | None = None,
    **_: Any,
) -> dict[str, int]:
    """Queue job: append every instance of ``input_dir`` (a folder; emptied once archived
    with ``remove_input``) or ``input_url`` (a staging prefix, removed once archived) to
    its series in ``datastore``, record each series in the ``catalog`` (by default the
    one beside a local datastore), then (``thumbnail``) renew the series' thumbnail when
    anything was added. Beneath ``protected`` it writes only a local datastore, the
    catalog it opened before and the folder it empties. With ``deid`` (an
    :class:`ArchiveDeid`'s JSON form) every instance is de-identified first, unless
    ``input_deidentified`` says the node did so when staging them (then ``refused``
    lists those it refused, which the job reports as its own).

    Raises:
        ArchiveError: if an instance could not be stored (the others are kept).
        ArchiveRefusedError: if an instance was refused by de-identification (the others
            are archived; the inputs are kept): not retried, it would be refused again.
        LockAcquisitionError: if another writer holds the series lock.
        CatalogError: if the catalog cannot be updated (the datastore is; a retry records).
    """
    location = catalog or default_catalog(absolute_datastore(datastore))
    opened = _catalog(location) if location else None
    staged = [str(why) for why in refused or []] if deid and input_deidentified else None
    deidentifier = None
    if deid is not None and staged is None:  # the key is read only where it is used
        deidentifier = ArchiveDeid.from_kwargs(deid).deidentifier()
    if protected:  # the catalog and key are read already: their files stay writable
        _protect(datastore, [Path(path) for path in protected], input_dir if remove_input else None)
    source = input_url or input_dir or ""
    gathered = _gather(list_files(source), deidentifier, staged)
    totals = _archive(gathered, datastore, opened, thumbnail)
    if refusals := gathered.refusals():
        raise ArchiveRefusedError(
            f"{len(refusals)} instance(s) of {source} refused by de-identification"
            f" and not archived (the others are; the inputs are kept): " + "; ".join(refusals[:5])
        )
    if input_url:
        remove_folder(input_url)
    if remove_input and input_dir:
        _empty(Path(input_dir))
    logger.info("archived %s into %s: %s", source, datastore, totals)
    return totals


def _gather(
    uris: list[str], deidentifier: Deidentifier | None, staged: list[str] | None
) -> Gathered:
    """The instances of ``uris`` by (study, series): as they are, de-identified, or (with
    ``staged``, the node's refusals) de-identified already by the node."""
    if staged is not None:
        return staged_groups(uris, staged)
    if deidentifier is not None:
        return deidentified_groups(uris, deidentifier)
    groups: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    for uri in uris:
        groups[_series_of(uri)].append(Instance(dicom_uri=uri))
    return Gathered(groups)


_catalogs: OrderedDict[str, Catalog] = OrderedDict()
_catalogs_lock = threading.Lock()
CATALOGS_KEPT = 4


def _catalog(location: str) -> Catalog:
    """The catalog at ``location``, opened once per process and kept open (the few most
    recently used): the next job of the process uses it again, and a job's own process
    ends with it (closing the last connection to a SQLite catalog checkpoints it, which
    would cost each job more than its recording)."""
    with _catalogs_lock:
        if location not in _catalogs:
            _catalogs[location] = open_catalog(location)
            while len(_catalogs) > CATALOGS_KEPT:
                _catalogs.popitem(last=False)[1].close()
        _catalogs.move_to_end(location)
        return _catalogs[location]


def _archive(
    gathered: Gathered, datastore: str, catalog: Catalog | None, thumbnail: bool
) -> dict[str, int]:
    """Append each series' instances under its lock, sync, record, renew the thumbnail."""
    totals = {"new": 0, "duplicates": 0, "conflicts": 0}
    for (study_uid, series_uid), instances in gathered.groups.items():
        with CODObject(
            datastore_path=datastore,
            study_uid=study_uid,
            series_uid=series_uid,
            lock=True,
            deidentified=gathered.deidentified,
        ) as cod:
            result = cod.append(instances)
            cod.sync()
            if catalog is not None:  # under the series lock: writers record in turn
                catalog.record(_synced(cod))
            if thumbnail and (result.new or result.conflicts):
                _renew_thumbnail(cod)
        if result.errors:
            failures = "; ".join(f"{i.dicom_uri}: {e}" for i, e in result.errors[:5])
            raise ArchiveError(f"Series {series_uid}: {len(result.errors)} error(s): {failures}")
        totals["new"] += len(result.new)
        totals["duplicates"] += len(result.duplicates)
        totals["conflicts"] += len(result.conflicts)
    return totals


def _synced(cod: CODObject) -> SeriesDocument:
    """The series as its metadata now holds it (what the catalog records)."""
    instances = cod.get_metadata().instances
    return SeriesDocument(cod.study_uid, cod.series_uid, dict(instances))


def _empty(folder: Path) -> None:
    """Remove what ``folder`` holds (a protected job may not remove the folder itself: that
    is a write to its parent)."""
    for entry in folder.iterdir() if folder.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _protect(datastore: str, protected: list[Path], removed: str | None) -> None:
    """From here on, write beneath ``protected`` only to a local ``datastore`` and the
    folder ``removed``."""
    writable = [Path(removed)] if removed else []
    folder = local_folder(datastore)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)  # cannot be made once protected
        writable.append(folder)
    if protect_job(protected, writable):
        logger.debug("archive job: writes beneath %s refused", [str(p) for p in protected])


def _renew_thumbnail(cod: CODObject) -> None:
    """Write the series' thumbnail; a series without pixel data, or a machine without
    PyAV, simply has none (the archived instances are what matters)."""
    try:
        cod.write_thumbnail()
    except CODError as exc:
        logger.info("series %s: no thumbnail: %s", cod.layout.series_uid, exc)
    except Exception as exc:  # pixel data pydicom cannot decode, say: one line, no traceback
        logger.warning(
            "series %s: the thumbnail failed: %s: %s",
            cod.layout.series_uid,
            type(exc).__name__,
            exc,
        )


def collect_output(job: Job, job_name: str, output_dir: Path) -> int:
    """Fetch what a finished service job left in the datastore into ``output_dir``.

    Only jobs that carry an ``output_url`` (see :mod:`dicomflow.services.consumer`) left
    anything there; the staging prefix is removed once fetched. Returns the file count.
    """
    url = job.kwargs.get("output_url")
    if not isinstance(url, str):
        return 0
    prefix = f"{url}/{job_name}"
    count = download_folder(prefix, output_dir)
    remove_folder(prefix)
    logger.info("job %s: %d result file(s) fetched from %s", job.id, count, prefix)
    return count


class Consumers:
    """Several series consumers as one: every one schedules its jobs for each series.

    With an :class:`ArchiveScheduler` among them, it schedules first, and the others
    (the registry services) read the series from the archive once its job is done.
    """

    def __init__(self, *consumers: Any) -> None:
        self.consumers = [consumer for consumer in consumers if consumer is not None]
        archives = [c for c in self.consumers if isinstance(c, ArchiveScheduler)]
        self.archive = archives[0] if archives else None

    def refusal(self, dataset: Dataset) -> str | None:
        """Why the archive among them could not file ``dataset`` (None without one)."""
        return None if self.archive is None else self.archive.refusal(dataset)

    def schedule(
        self,
        instances_dir: Path,
        output_root: Path,
        series_key: str,
        *,
        protected: Sequence[Path] = (),
    ) -> SeriesJobs:
        """Schedule every consumer's jobs (``protected`` passed on). A server that did not
        answer (the queue's, the datastore's) raises, and the series is scheduled again
        later; any other failure of a consumer is an error of the series (its batch is then
        kept as failed). If the archive cannot be scheduled, nothing else is."""
        combined = SeriesJobs({}, {})
        reading: dict[str, Any] = {"protected": protected}
        if self.archive is not None:
            try:
                where = (instances_dir, output_root, series_key)
                combined = self.archive.schedule(*where, protected=protected)
                archived = self.archive.archived(instances_dir)
            except Exception as exc:
                if retryable(exc):  # the queue or datastore did not answer: try again
                    raise
                logger.exception("series %s: the archive job was not scheduled", series_key[:12])
                return SeriesJobs({}, {ARCHIVE_JOB: f"Not scheduled: {exc}"})
            if archived is not None:
                reading |= {"archived": archived, "after": list(combined.job_ids.values())}
        for consumer in self.consumers:
            if consumer is not self.archive:
                where = (instances_dir, output_root, series_key)
                self._schedule_one(consumer, combined, where, **reading)
        return combined

    @staticmethod
    def _schedule_one(
        consumer: Any, combined: SeriesJobs, where: tuple[Path, Path, str], **reading: Any
    ) -> None:
        try:
            scheduled = consumer.schedule(*where, **reading)
        except Exception as exc:
            if retryable(exc):  # the queue did not answer: the whole series is tried again
                raise
            logger.exception("series %s: jobs not scheduled", where[2][:12])
            combined.errors[type(consumer).__name__] = f"Not scheduled: {exc}"
            return
        combined.job_ids.update(scheduled.job_ids)
        combined.errors.update(scheduled.errors)

    def collect_output(self, job: Job, job_name: str, output_dir: Path) -> int:
        """See :func:`collect_output`."""
        return collect_output(job, job_name, output_dir)
