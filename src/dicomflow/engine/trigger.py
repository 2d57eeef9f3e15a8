"""The trigger: decides when a patient's inputs are checked.

A patient is checked after every association that sent it instances is
released (or aborted), and, when ``quiet_period_s`` is set, once no instance
has arrived for it for that long. Checks run on one thread, in order. A check
that cannot write the spool (a full disk) is made again ``RETRY_S`` later; one that
returns true is made again at once.
"""

import logging
import threading
import time
from collections.abc import Callable

from dicomflow.errors import SpoolError

logger = logging.getLogger(__name__)

RETRY_S = 5.0


class Trigger:
    """Queues patient checks and runs them on its own thread."""

    def __init__(self, check: Callable[[str], bool | None], quiet_period_s: float | None) -> None:
        self._check = check
        self._quiet = quiet_period_s
        self._touched: dict[int, set[str]] = {}
        self._last_arrival: dict[str, float] = {}
        self._queue: list[str] = []
        self._condition = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="dicomflow-trigger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stop = True
            self._condition.notify()
        self._thread.join(timeout=30)

    def arrived(self, association_id: int, patient_key: str) -> None:
        """Record that an instance of ``patient_key`` arrived on an association."""
        with self._condition:
            self._touched.setdefault(association_id, set()).add(patient_key)
            if self._quiet is not None:
                self._last_arrival[patient_key] = time.monotonic()
                self._condition.notify()

    def released(self, association_id: int) -> None:
        """Queue a check of every patient the association touched."""
        with self._condition:
            touched = self._touched.pop(association_id, set())
            self._queue.extend(sorted(touched))
            self._condition.notify()

    def request(self, patient_key: str) -> None:
        """Queue a check of ``patient_key`` now."""
        with self._condition:
            self._queue.append(patient_key)
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                if not self._has_work():
                    self._condition.wait(timeout=self._next_wait())
                if self._stop:
                    return
                due = self._due()
            for patient_key in dict.fromkeys(due):
                self._safe_check(patient_key)

    def _has_work(self) -> bool:
        return self._stop or bool(self._queue) or self._quiet_due_now()

    def _due(self) -> list[str]:
        due, self._queue = self._queue, []
        if self._quiet is not None:
            now = time.monotonic()
            quiet = [k for k, t in self._last_arrival.items() if now - t >= self._quiet]
            for key in quiet:
                del self._last_arrival[key]
            due.extend(quiet)
        return due

    def _quiet_due_now(self) -> bool:
        if self._quiet is None or not self._last_arrival:
            return False
        return time.monotonic() - min(self._last_arrival.values()) >= self._quiet

    def _next_wait(self) -> float | None:
        if self._quiet is None or not self._last_arrival:
            return None
        remaining = self._quiet - (time.monotonic() - min(self._last_arrival.values()))
        return max(remaining, 0.0) + 0.001

    def _safe_check(self, patient_key: str) -> None:
        try:
            again = self._check(patient_key)
        except SpoolError as exc:  # the spool cannot be written now: check again later
            logger.warning(
                "patient %s: cannot check its inputs (%s); again in %.0f s",
                patient_key[:12],
                exc,
                RETRY_S,
            )
            timer = threading.Timer(RETRY_S, self.request, (patient_key,))
            timer.daemon = True
            timer.start()
        except Exception:
            logger.exception("patient %s: checking its inputs failed", patient_key[:12])
        else:
            if again:  # the check asks for another
                self.request(patient_key)
