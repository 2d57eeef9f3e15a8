"""One node per data directory: an exclusive ``flock`` on ``{data}/node.lock``.

Two nodes sharing a data directory would write the same journal segment and take
the same spool instances into rounds twice. The lock is held while the node
runs; the kernel releases it when the process ends, ``kill -9`` included, so a
stale lock file never blocks a restart. Tools that only read (``dicomflow
dashboard``) and the worker processes do not take it.
"""

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from dicomflow.errors import DataDirectoryInUseError
from dicomflow.logs import make_private_folders

logger = logging.getLogger(__name__)

LOCK_FILE = "node.lock"


class DataDirectoryLock:
    """The lock of one data directory (not re-entrant)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> None:
        """Take the lock and write this process's id into the file.

        Raises:
            DataDirectoryInUseError: naming the process that holds it.
        """
        if self.held:
            return
        make_private_folders(self.path.parent)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "?"
            os.close(descriptor)
            raise DataDirectoryInUseError(
                f"The data directory {self.path.parent} is in use by another node"
                f" (process {holder}); stop it, or give this node another data_directory."
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._fd = descriptor

    def release(self) -> None:
        """Let the lock go (idempotent); the file stays, harmlessly."""
        if self.held:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
