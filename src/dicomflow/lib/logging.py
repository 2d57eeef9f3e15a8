"""The pipeline library's ``lib.logging`` names that pipelines call.

The node's log is configured by the node (``log_output``/``log_path``,
``log_level``); ``get_logger()`` gives the pipeline's logger. ``set_logger`` sets up
a logger of the user's own (a stream, a weekly rotating file, or nothing).
"""

import logging
import logging.handlers
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dicomflow.logs import BACKUPS, FORMAT
from dicomflow.node.pipeline import PIPELINE_LOGGER


@dataclass
class LoggerConfig:
    """How :func:`set_logger` sets up a logger: ``log_output`` is a stream, a file
    path (rotating at ``when``, keeping ``number_of_backups``), or ``None`` (dropped)."""

    log_level: int = logging.DEBUG
    date_format: str = "%Y/%m/%d %H:%M:%S"
    format: str = FORMAT
    log_output: Path | IO[str] | None = field(default_factory=lambda: sys.stdout)
    when: str = "W0"
    number_of_backups: int = BACKUPS
    propagate: bool = False


def set_logger(logger: logging.Logger, config: LoggerConfig) -> None:
    """Replace ``logger``'s handlers (closing them) with the one ``config`` describes."""
    for old in logger.handlers:
        old.close()
    logger.handlers.clear()
    logger.setLevel(config.log_level)
    logger.propagate = config.propagate
    handler: logging.Handler
    if isinstance(config.log_output, str | Path):
        handler = logging.handlers.TimedRotatingFileHandler(
            config.log_output, when=config.when, backupCount=config.number_of_backups
        )
    elif config.log_output is None:
        handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(config.log_output)
    handler.setFormatter(logging.Formatter(config.format, datefmt=config.date_format))
    logger.addHandler(handler)


def get_logger() -> logging.Logger:
    """The logger of ``pipeline.logger``."""
    return logging.getLogger(PIPELINE_LOGGER)


def log_traceback(
    logger: logging.Logger, exception: BaseException, header_message: str | None = None
) -> None:
    """Log ``exception`` with its traceback at CRITICAL, after ``header_message``."""
    if header_message is not None:
        logger.critical(header_message)
    logger.critical(
        "Encountered exception: %s",
        type(exception).__name__,
        exc_info=(type(exception), exception, exception.__traceback__),
    )


__all__ = ["LoggerConfig", "get_logger", "log_traceback", "set_logger"]
