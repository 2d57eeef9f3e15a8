"""The series error log: ``error.log`` beside ``metadata.json``.

A writer that finds a series in a bad state says so in the error log. While it
exists no CODObject with ``lock=True`` is made on the series, unless
``override_errors=True`` deletes it first; readers are warned. It is created
exclusively and never overwritten.
"""

import logging

from dicomflow.cod.store import Store
from dicomflow.errors import ErrorLogExistsError

logger = logging.getLogger(__name__)


class ErrorLog:
    """The error log object at ``path`` (``uri`` names it in messages)."""

    def __init__(self, store: Store, path: str, uri: str) -> None:
        self.store, self.path, self.uri = store, path, uri

    def check(self, override_errors: bool, reader: bool = False) -> None:
        """Raise ErrorLogExistsError if the log exists; with ``override_errors``, delete it.

        A ``reader`` (an object that never writes) is only warned, and never deletes it.
        """
        if self.store.generation(self.path) is None:
            return
        if reader:
            logger.warning("%s: the series has an error log; reading it anyway", self.uri)
            return
        if not override_errors:
            raise ErrorLogExistsError(
                f'The series has an error log at "{self.uri}"; read it, then pass '
                "override_errors=True to delete it."
            )
        self.store.fs.rm(self.path)
        logger.warning("%s: error log deleted (override_errors)", self.uri)

    def write(self, message: str) -> None:
        """Create the log with ``message``; raise ErrorLogExistsError if there is one."""
        try:
            self.store.create(self.path, message.encode("utf-8"))
        except FileExistsError as exc:
            raise ErrorLogExistsError(
                f'The series already has an error log at "{self.uri}".'
            ) from exc
        logger.warning("%s: error log written", self.uri)
