"""Submissions to try again: rounds, series batches and archive outputs the queue could
not take (it did not answer), each submitted again after a wait that doubles from 1 s up
to 30 s, on a thread of its own."""

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from dicomflow.errors import DicomflowError

logger = logging.getLogger(__name__)

FIRST_WAIT_S = 1.0
MAX_WAIT_S = 30.0

T = TypeVar("T")


def retryable(exc: BaseException) -> bool:
    """Whether submitting again may cure ``exc``: a server (the queue's, a datastore's)
    that did not answer, not a refusal of what was submitted (a bad value, an unknown
    dependency)."""
    return not isinstance(exc, DicomflowError | ValueError | TypeError | LookupError)


class Resubmitter(Generic[T]):
    """Calls ``submit(item)`` again for each item handed to :meth:`later`, until stopped.

    ``submit`` calls :meth:`later` again itself when the queue still does not answer, and
    :meth:`done` once it did, so that the next failure of that key waits 1 s again.
    """

    def __init__(self, submit: Callable[[T], None]) -> None:
        self._submit = submit
        self._due: list[tuple[float, int, str, T]] = []
        self._waits: dict[str, float] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def later(self, key: str, item: T) -> float:
        """Submit ``item`` again after the next wait of ``key``; that wait in seconds."""
        with self._lock:
            wait_s = self._waits.get(key, FIRST_WAIT_S)
            self._waits[key] = min(wait_s * 2, MAX_WAIT_S)
            heapq.heappush(self._due, (time.monotonic() + wait_s, next(self._order), key, item))
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="dicomflow-resubmit", daemon=True
                )
                self._thread.start()
        self._wake.set()
        return wait_s

    def done(self, key: str) -> None:
        with self._lock:
            self._waits.pop(key, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._due)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._next_due()
            if item is None:
                continue
            try:
                self._submit(item)
            except Exception:  # a bug, not an unreachable queue: the item stays where it is
                logger.exception("submitting again failed")

    def _next_due(self) -> T | None:
        with self._lock:
            wait_s = self._due[0][0] - time.monotonic() if self._due else 60.0
            if wait_s <= 0:
                return heapq.heappop(self._due)[3]
            self._wake.clear()
        self._wake.wait(wait_s)
        return None
