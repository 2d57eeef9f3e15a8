"""Running one service job inside a worker process: find the worker function, call it.

:func:`run_service_job` is the queue function of every job the scheduler
enqueues; its keyword arguments are the job's JSON ``kwargs``. The
``service`` entry says where the worker lives; everything else (``jobName``,
``headers``, ``params``, ``added_params`` and the caller's extras such as
``input_dir``/``output_dir``) goes to the worker by keyword — all of it if the
worker takes ``**kwargs``, otherwise only the parameters it declares.

While the worker runs, the service's ``module/`` folder, then its virtual
environment's site-packages (when it has one), come first on ``sys.path``; the
base interpreter's site-packages, which that environment also sees, come
last. A module this worker process imported already (say numpy) stays the
one in use even if the environment has another version — a warning names it.
Afterwards ``sys.path`` is restored and the modules loaded from those folders
are forgotten, so the next service job run by the same process imports its own
code even when the module names are the same. ``sys.path`` is process-wide, so
this is meant for the queue's worker processes, which run one job at a time.
The worker's return value is not used (as in the seed); its exceptions fail
the job.

A job of a node that archives carries ``archive_input`` and ``output_url``
instead of paths (see :mod:`dicomflow.services.consumer`): the runner fetches
the series' instances from the archive into a temporary ``input_dir``, gives the
worker an empty temporary ``output_dir``, and, once the worker has returned,
uploads that folder's DICOM files to ``{output_url}/{jobName}``. Both folders are
removed afterwards.

As the seed's workers, the worker sees ``DATA``, ``LOGS`` and ``MODULES`` (also
``MODULE``, which the seed's template service reads) in its environment: the
registry root's ``data/`` and ``logs/`` folders (created) and its ``modules/``
folder, which is also on ``sys.path`` after the service's own folders, so a
seed worker named ``"service.function"`` imports its ``module/`` folder as the
package ``service``. The variables are set before the worker's module is
imported (the seed's modules read them at import) and restored afterwards.

A job that carries ``protected`` (the node's data directory, when the node protects
its files) may write nothing beneath it but its own output folder; see
:mod:`dicomflow.services.protection`. The protection is in place before the worker's
module is imported.
"""

import importlib
import logging
import os
import site
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomflow.cod.transfer import ArchivedSeries, fetch_series, upload_folder
from dicomflow.errors import ServiceDefinitionError
from dicomflow.services.definitions import worker_parts
from dicomflow.services.environment import site_dirs, system_site_dirs
from dicomflow.services.protection import protect_service_job, protected_places
from dicomflow.services.registry import Registry
from dicomflow.services.signature import call_with_keywords

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceRef:
    """Where a job's worker function lives."""

    name: str
    worker: str
    module_dir: Path
    venv_dir: Path | None = None

    @classmethod
    def from_kwargs(cls, value: object) -> "ServiceRef":
        """Read the ``service`` entry of a job's kwargs.

        Raises:
            ServiceDefinitionError: if the entry is missing or malformed.
        """
        if not isinstance(value, dict) or not all(
            isinstance(value.get(key), str) for key in ("name", "worker", "module_dir")
        ):
            raise ServiceDefinitionError(
                f'A service job\'s kwargs need "service" with "name", "worker" and "module_dir" '
                f"strings; got {value!r:.200}."
            )
        venv = value.get("venv_dir")
        return cls(
            name=value["name"],
            worker=value["worker"],
            module_dir=Path(value["module_dir"]),
            venv_dir=Path(venv) if isinstance(venv, str) and venv else None,
        )

    @property
    def first_folders(self) -> list[Path]:
        """Searched before the worker process's own path: module folder, environment,
        the folder of every service's module folder (the seed's ``MODULES``)."""
        venv = site_dirs(self.venv_dir) if self.venv_dir is not None else []
        return [self.module_dir, *venv, self.module_dir.parent]

    @property
    def environment(self) -> dict[str, str]:
        """The seed's variables for this service's worker (folders created)."""
        registry = Registry(self.module_dir.parent.parent)
        for folder in (registry.data_dir, registry.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        modules = str(self.module_dir.parent)
        data, logs = str(registry.data_dir), str(registry.logs_dir)
        return {"DATA": data, "LOGS": logs, "MODULES": modules, "MODULE": modules}

    @property
    def last_folders(self) -> list[Path]:
        """Searched after it: the base interpreter's site-packages, if the environment
        was created with ``--system-site-packages``."""
        return system_site_dirs(self.venv_dir) if self.venv_dir is not None else []


def run_service_job(**kwargs: Any) -> None:
    """Call the job's worker function with the job's keyword arguments.

    With an ``output_root`` keyword (as the node passes), the worker also gets
    ``output_dir``: ``output_root/{jobName}``, created; DICOM files it writes there
    are sent to the node's endpoints when the job finishes. With ``archive_input``
    and ``output_url`` it reads from and writes to the archive instead (see above).

    Raises:
        ServiceDefinitionError: if the worker cannot be found.
        CODError: if the series cannot be read from the archive.
        Exception: whatever the worker raises.
    """
    service = ServiceRef.from_kwargs(kwargs.pop("service", None))
    protected = protected_places(kwargs.pop("protected", None))
    archive_input, output_url = kwargs.pop("archive_input", None), kwargs.pop("output_url", None)
    if archive_input is None and output_url is None:
        kwargs = _with_output_dir(kwargs)
        outputs = [Path(kwargs["output_dir"])] if "output_dir" in kwargs else []
        _protect(kwargs, protected, [*outputs, *_shared(service)])
        _call_worker(service, kwargs)
        return
    # A protected job could not remove a folder made directly in /tmp (a directory on the
    # way to the data directory, say): its scratch folder is in its working directory.
    where = os.getcwd() if protected else None
    with tempfile.TemporaryDirectory(prefix="dicomflow-service-", dir=where) as scratch:
        _run_in_scratch(service, kwargs, Path(scratch), (archive_input, output_url), protected)


def _run_in_scratch(
    service: ServiceRef,
    kwargs: dict[str, Any],
    scratch: Path,
    archive: tuple[object, object],
    protected: list[Path],
) -> None:
    """Fetch the inputs (``archive_input``) into ``scratch``, run the worker, upload its
    results (to ``output_url``)."""
    archive_input, output_url = archive
    archived = None if archive_input is None else ArchivedSeries.from_kwargs(archive_input)
    if output_url is not None:
        (scratch / "output").mkdir()
        kwargs["output_dir"] = str(scratch / "output")
    _protect(kwargs, protected, [scratch, *_shared(service)], archived, output_url)
    if archived is not None:
        fetch_series(archived, scratch / "input")
        kwargs["input_dir"] = str(scratch / "input")
    _call_worker(service, kwargs)
    if output_url is not None:
        job_name = kwargs.get("jobName", "job")
        count = upload_folder(scratch / "output", f"{output_url}/{job_name}")
        logger.info("job %s: %d result file(s) uploaded to %s", job_name, count, output_url)


def _protect(
    kwargs: dict[str, Any],
    protected: list[Path],
    writable: list[Path],
    archived: ArchivedSeries | None = None,
    output_url: object = None,
) -> None:
    """With ``protected`` places, let the job write only ``writable`` beneath them."""
    if protected:
        url = None if output_url is None else str(output_url)
        protect_service_job(str(kwargs.get("jobName", "job")), protected, writable, archived, url)


def _shared(service: ServiceRef) -> list[Path]:
    """The seed's shared folders (``DATA``, ``LOGS``): a seed worker writes there."""
    return [Path(service.environment[name]) for name in ("DATA", "LOGS")]


def _with_output_dir(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Add ``output_dir`` (``output_root/{jobName}``, created) when there is an output_root."""
    if kwargs.get("output_root") and "output_dir" not in kwargs:
        output_dir = Path(kwargs["output_root"]) / str(kwargs.get("jobName", "job"))
        output_dir.mkdir(parents=True, exist_ok=True)
        kwargs["output_dir"] = str(output_dir)
    return kwargs


def _call_worker(service: ServiceRef, kwargs: dict[str, Any]) -> None:
    with service_environment(service), service_imports(service):
        worker = load_worker(service)
        logger.info(
            "job %s: service %s runs %s", kwargs.get("jobName"), service.name, service.worker
        )
        call_with_keywords(worker, kwargs)


def load_worker(service: ServiceRef) -> Callable[..., Any]:
    """Import the worker function (call inside :func:`service_imports`).

    Raises:
        ServiceDefinitionError: naming the service, the worker and the folder.
    """
    module_name, qualname = worker_parts(service.worker)
    where = f'Service "{service.name}": worker "{service.worker}"'
    importlib.invalidate_caches()
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ServiceDefinitionError(
            f"{where} cannot be imported from {service.module_dir}: {exc}."
        ) from exc
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise ServiceDefinitionError(f'{where}: module {module_name} has no "{qualname}".')
        target = getattr(target, part)
    if not callable(target):
        raise ServiceDefinitionError(f"{where} is {type(target).__name__}, not a function.")
    worker: Callable[..., Any] = target
    return worker


@contextmanager
def service_environment(service: ServiceRef) -> Iterator[None]:
    """Set the seed's variables (see :attr:`ServiceRef.environment`); restore them on exit."""
    values = service.environment
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def service_imports(service: ServiceRef) -> Iterator[None]:
    """Put the service's folders on ``sys.path`` (its own first); undo it, and forget the
    modules loaded from them, on exit."""
    saved_path = list(sys.path)
    loaded = set(sys.modules)
    first, last = service.first_folders, service.last_folders
    sys.path[:0] = [str(folder) for folder in first]
    sys.path += [str(folder) for folder in last if str(folder) not in saved_path]
    for folder in first[1:-1]:  # the environment (not the module folders)
        site.addsitedir(str(folder))  # runs the environment's .pth files
        _warn_shadowed(service, folder)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        _forget_modules(set(sys.modules) - loaded, [*first, *last])


def _warn_shadowed(service: ServiceRef, folder: Path) -> None:
    """Modules of the environment that this process imported already win over it."""
    names = {_top_level_name(path) for path in folder.iterdir()}
    shadowed = sorted(name for name in names if name and name in sys.modules)
    if shadowed:
        logger.warning(
            "service %s: %s already imported by this worker process; the versions in %s "
            "are not used",
            service.name,
            ", ".join(shadowed),
            folder,
        )


def _top_level_name(path: Path) -> str:
    if path.suffix == ".py":
        return path.stem
    if path.is_dir() and "." not in path.name and path.name != "__pycache__":
        return path.name
    return ""


def _forget_modules(names: set[str], folders: Sequence[Path]) -> None:
    for name in names:
        module = sys.modules.get(name)
        files = [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or [])]
        if any(_inside(file, folders) for file in files if isinstance(file, str)):
            del sys.modules[name]


def _inside(file: str, folders: Sequence[Path]) -> bool:
    return any(Path(file).is_relative_to(folder) for folder in folders)
