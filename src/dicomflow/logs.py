"""Logging set-up for entry points (the CLI, ``AbstractPipeline.open()``).

Only entry points configure handlers. The log file, when set, rotates every
Monday at midnight and keeps 8 backups (about two months).
"""

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
BACKUPS = 8


def configure_logging(
    level: str = "INFO", log_path: Path | None = None, *, stderr: bool = True
) -> None:
    """Send log records to stderr (unless not ``stderr``) and, if ``log_path`` is set, to
    a weekly rotating file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dicomflow", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()] if stderr else []
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.TimedRotatingFileHandler(
                log_path, when="W0", backupCount=BACKUPS, encoding="utf-8"
            )
        )
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._dicomflow = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("pynetdicom").setLevel(max(root.level, logging.WARNING))
