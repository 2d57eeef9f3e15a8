"""Write protection of a service job: its worker writes its own folders, nothing else of the node.

A node with ``job_write_protection`` gives each service job ``protected``, its data
directory. Before the worker's code is imported, the job's process is made unable to
create, write, truncate, move or delete anything beneath those directories
(:mod:`dicomflow.queue.landlock`) except its own output folder: ``output_root/{jobName}``
when it works on the node's folders, its scratch folder (the fetched instances, the
results to upload) when it reads the archive. A local datastore the job reads is
protected as well, except the job's own upload folder, ``{output_url}/{jobName}``.

So a worker cannot touch the journal, the spools, the queue, the logs, another job's
results, the series' batch or its own inputs. Its temporary files go to its working
directory. Where the kernel has no Landlock, the job runs unprotected and its log says so.
"""

import logging
from collections.abc import Sequence
from pathlib import Path

from dicomflow.cod.transfer import ArchivedSeries, local_folder
from dicomflow.errors import ServiceDefinitionError
from dicomflow.queue.landlock import protect_job

logger = logging.getLogger(__name__)


def protected_places(value: object) -> list[Path]:
    """Read the ``protected`` entry of a job's kwargs (none when it is missing).

    Raises:
        ServiceDefinitionError: if the entry is not a list of strings.
    """
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ServiceDefinitionError(
            f'A service job\'s "protected" must be a list of folder paths; got {value!r:.200}.'
        )
    return [Path(item) for item in value]


def protect_service_job(
    job_name: str,
    protected: Sequence[Path],
    writable: Sequence[Path],
    archived: ArchivedSeries | None = None,
    output_url: str | None = None,
) -> None:
    """From here on, write only to ``writable`` (and the job's upload folder, when the
    datastore is local) beneath ``protected`` and the local datastore of ``archived``."""
    places, allowed = list(protected), list(writable)
    datastore = local_folder(archived.datastore) if archived is not None else None
    if datastore is not None:
        places.append(datastore)
    upload = local_folder(f"{output_url}/{job_name}") if output_url is not None else None
    if upload is not None:
        upload.mkdir(parents=True, exist_ok=True)  # cannot be made once protected
        allowed.append(upload)
    if protect_job(places, allowed):
        logger.debug("job %s: writes beneath %s refused", job_name, [str(p) for p in places])
