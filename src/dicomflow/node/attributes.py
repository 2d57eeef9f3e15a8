"""The pipeline library's class attributes that dicomflow's own names do not cover.

Code written for that library sets them on its ``AbstractPipeline`` subclass. Each
is either honoured (turned into node settings or used by the node), satisfied by
dicomflow's design (accepted, with a log line saying how), or refused with an
:class:`IncorrectlyConfigured` error naming it: none is ignored silently. Any other
attribute is the user's own and is left alone.
"""

import logging
import sys
from pathlib import Path
from typing import IO, Any

from dicomflow.errors import IncorrectlyConfigured
from dicomflow.logs import BACKUPS

logger = logging.getLogger(__name__)

ROTATION = "W0"

REFUSED = {
    "maintenance_thread": "incomplete patients are kept on disk until they complete; "
    "there is no expiry thread to replace",
    "study_expiration_days": "incomplete patients are kept on disk until they complete, "
    "never expired",
    "supported_contexts": "the receiver accepts the storage SOP classes it knows; a custom "
    "list of presentation contexts is not supported",
    "run_file": "the data directory is claimed with a lock file of its own (data.lock)",
    "unhandled_error_blueprint": "a failed round keeps its inputs in failed/ with "
    "error.json; no error series is built or sent",
    "StorageType": "received instances are kept in dicomflow's durable spool; storage "
    "classes cannot be replaced",
    "log_format": "the log format is fixed (one line per record, control characters escaped)",
    "log_date_format": "the log format is fixed (one line per record, control characters escaped)",
}
"""Attributes dicomflow cannot honour, with why (the error message names the attribute)."""

SATISFIED = {
    "processing_directory": "each round is processed in its own working directory "
    "(rounds/{round_id}/work under the data directory), removed when the round ends",
    "lazy_storage": "received instances are always kept on disk and read when processed",
}
"""Attributes whose purpose dicomflow always fulfils its own way."""

FIXED_VALUES: dict[str, object] = {"log_when": ROTATION, "number_of_backups": BACKUPS}
"""Attributes accepted when they ask for what dicomflow does anyway."""

BASE_CLASSES = frozenset({"AbstractPipeline", "AbstractQueuedPipeline"})


def declared(pipeline_class: type, name: str) -> bool:
    """Whether the user's classes (not dicomflow's bases) set ``name``."""
    return any(
        name in vars(klass)
        for klass in pipeline_class.__mro__
        if klass is not object and not _is_base(klass)
    )


def _is_base(klass: type) -> bool:
    return klass.__module__.startswith("dicomflow.") and klass.__name__ in BASE_CLASSES


def check_attributes(pipeline_class: type) -> None:
    """Refuse the attributes dicomflow cannot honour; log the ones it satisfies."""
    name = pipeline_class.__qualname__
    for attribute, why in REFUSED.items():
        if declared(pipeline_class, attribute):
            raise IncorrectlyConfigured(
                f"{name}.{attribute} is not supported by dicomflow: {why}. Remove it."
            )
    for attribute, wanted in FIXED_VALUES.items():
        value = getattr(pipeline_class, attribute, wanted)
        if declared(pipeline_class, attribute) and str(value).upper() != str(wanted).upper():
            raise IncorrectlyConfigured(
                f"{name}.{attribute} = {value!r} is not supported by dicomflow: logs rotate "
                f"weekly ({ROTATION}) keeping {BACKUPS} backups. Remove it."
            )
    for attribute, how in SATISFIED.items():
        if declared(pipeline_class, attribute):
            logger.info("%s.%s: not needed with dicomflow: %s", name, attribute, how)


def settings_values(pipeline_class: type) -> dict[str, Any]:
    """Node settings from the original's attribute names the user set."""
    values: dict[str, Any] = {}
    name = pipeline_class.__qualname__
    if declared(pipeline_class, "data_directory"):
        values["data_directory"] = _data_directory(pipeline_class)
    calling = getattr(pipeline_class, "require_calling_aet", None) or []
    if calling:
        allowed = list(getattr(pipeline_class, "allowed_ae_titles", None) or [])
        values["allowed_ae_titles"] = allowed + [t for t in calling if t not in allowed]
    if declared(pipeline_class, "require_called_aet"):
        values["require_called_ae_title"] = bool(pipeline_class.require_called_aet)  # type: ignore[attr-defined]
    level = getattr(pipeline_class, "log_level", None)
    if isinstance(level, int) and not isinstance(level, bool):
        values["log_level"] = _level_name(name, level)
    return values


def _data_directory(pipeline_class: type) -> Path | None:
    data = getattr(pipeline_class, "data_directory", None)
    root = getattr(pipeline_class, "root_data_directory", None)
    name = pipeline_class.__qualname__
    if data is not None and root is not None and Path(data) != Path(root):
        raise IncorrectlyConfigured(
            f"{name}.data_directory ({data}) and {name}.root_data_directory ({root}) name "
            "the same setting with different values; set one."
        )
    return None if data is None else Path(data)


def _level_name(name: str, level: int) -> str:
    text = logging.getLevelName(level)
    if not isinstance(text, str) or text.startswith("Level "):
        raise IncorrectlyConfigured(
            f"{name}.log_level = {level} is not a logging level; use logging.DEBUG, "
            "logging.INFO, logging.WARNING, logging.ERROR or logging.CRITICAL."
        )
    return text


def log_destination(pipeline_class: type) -> tuple[Path | None, IO[str] | None]:
    """Where ``log_output`` sends the log: a rotating file, a stream, or (``None``)
    nowhere but the workers' logs. Unset: ``log_path`` and stderr, dicomflow's default."""
    log_path = getattr(pipeline_class, "log_path", None)
    if declared(pipeline_class, "log_output") and log_path is not None:
        raise IncorrectlyConfigured(
            f"{pipeline_class.__qualname__}.log_output and .log_path both say where the log "
            "goes; set one."
        )
    if not declared(pipeline_class, "log_output"):
        return (None if log_path is None else Path(log_path)), sys.stderr
    output = pipeline_class.log_output  # type: ignore[attr-defined]
    if output is None:
        return None, None
    if output == "stdout":
        return None, sys.stdout
    if isinstance(output, str | Path):
        return Path(output), None
    if callable(getattr(output, "write", None)):
        return None, output
    raise IncorrectlyConfigured(
        f"{pipeline_class.__qualname__}.log_output must be None, a path or a text stream; "
        f"got {output!r}."
    )


def pynetdicom_level(pipeline_class: type) -> int | None:
    """The level asked for pynetdicom's logger, if any."""
    if getattr(pipeline_class, "disable_pynetdicom_logger", False):
        return logging.CRITICAL + 1
    if declared(pipeline_class, "pynetdicom_logger_level"):
        return int(pipeline_class.pynetdicom_logger_level)  # type: ignore[attr-defined]
    return None
