"""Logging set-up for entry points (the CLI, ``AbstractPipeline.open()``).

Only entry points configure handlers. The log file, when set, rotates every
Monday at midnight and keeps 8 backups (about two months).

Log messages carry values that peers chose (AE titles, UIDs, the text of errors
about what they sent). A record's first line is its only unindented one:
control characters in a message are escaped (``\\n``, ``\\x1b``) and every line
of a traceback is indented, so no peer can forge a record of its own.
"""

import logging
import logging.handlers
import os
import re
from pathlib import Path
from typing import IO, Any

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
BACKUPS = 8
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escaped(value: object) -> str:
    """``value`` as text with its control characters escaped (fit for one log line)."""
    return CONTROL_CHARACTERS.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character in ESCAPES:
        return ESCAPES[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


class OneLineFormatter(logging.Formatter):
    """A formatter whose records each start one line: messages are escaped, tracebacks
    indented."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escaped(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        first, _, rest = super().format(record).partition("\n")
        if not rest:
            return first
        return "\n".join([first, *(f"  {line}" for line in rest.splitlines())])


class _PrivateRotatingFileHandler(logging.handlers.TimedRotatingFileHandler):
    """A weekly rotated log whose every file is readable by this user only (0600): it names
    studies and peers."""

    def _open(self) -> Any:
        stream = super()._open()
        os.chmod(self.baseFilename, 0o600)
        return stream


def make_private_folders(directory: Path) -> None:
    """Make ``directory`` and its missing parents, each readable by this user only (0700)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)


def configure_logging(
    level: str = "INFO",
    log_path: Path | None = None,
    *,
    stderr: bool = True,
    stream: IO[str] | None = None,
) -> None:
    """Send log records to ``stream`` (stderr by default; none if not ``stderr``) and, if
    ``log_path`` is set, to a weekly rotating file."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dicomflow", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream)] if stderr else []
    if log_path is not None:
        make_private_folders(log_path.parent)
        handlers.append(
            _PrivateRotatingFileHandler(log_path, when="W0", backupCount=BACKUPS, encoding="utf-8")
        )
    for handler in handlers:
        handler.setFormatter(OneLineFormatter(FORMAT))
        handler._dicomflow = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("pynetdicom").setLevel(max(root.level, logging.WARNING))
