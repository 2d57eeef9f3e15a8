"""Free disk space: how much there is, and whether an error means there is none."""

import errno
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(directory: Path) -> int:
    """The bytes an unprivileged writer may still use on ``directory``'s filesystem."""
    status = os.statvfs(directory)
    return status.f_bavail * status.f_frsize


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE:
            return True
        current = current.__cause__ or current.__context__
    return False


def no_space(message: str) -> OSError:
    """An ``ENOSPC`` error carrying ``message`` (raise a clearer error from it)."""
    return OSError(errno.ENOSPC, message)


class SpaceWait:
    """Calls ``attempt`` every ``interval_s`` in a thread of its own until it returns
    True (it found the space it needed) or :meth:`stop` is called."""

    def __init__(self, attempt: Callable[[], bool], interval_s: float = 1.0) -> None:
        self.attempt = attempt
        self.interval_s = interval_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="space-wait", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                if self.attempt():
                    return
            except Exception:
                logger.exception("waiting for free disk space: the attempt failed; retrying")
