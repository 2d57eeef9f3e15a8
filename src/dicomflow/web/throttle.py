"""The login throttle: failed password attempts counted per client address (see
:mod:`~dicomflow.web.proxies` for which address that is). The web token is never
throttled: it is checked before the throttle, so a flood of wrong attempts cannot lock
its holder out.
"""

import logging
import threading
import time

from fastapi import HTTPException, status

logger = logging.getLogger(__name__)

MAX_ADDRESSES = 10_000  # bounded memory under a spray of addresses


class Throttle:
    """After ``limit`` failures from an address within ``window_s`` seconds, that
    address gets 429 for password attempts until the window has passed."""

    def __init__(self, limit: int = 10, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Raise 429 if ``address`` failed too often lately."""
        with self._lock:
            recent = self._recent(address)
        if len(recent) >= self.limit:
            retry = max(1, int(recent[0] + self.window_s - time.monotonic()))
            logger.warning("refused a login attempt from %s for %d s", address, retry)
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"Too many failed logins from {address}; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )

    def failed(self, address: str) -> None:
        with self._lock:
            self._failures[address] = [*self._recent(address), time.monotonic()]
            if len(self._failures) > MAX_ADDRESSES:
                self._failures.pop(next(iter(self._failures)))

    def _recent(self, address: str) -> list[float]:
        oldest = time.monotonic() - self.window_s
        return [when for when in self._failures.get(address, []) if when > oldest]
