"""The login throttle: failed password attempts counted per client address.

The client address is the peer of the connection; ``X-Forwarded-For`` is read only
when that peer is one of ``web_trusted_proxies`` (then the address nearest the proxy
that is not itself a trusted proxy). The web token is never throttled: it is checked
before the throttle, so a flood of wrong attempts cannot lock its holder out.
"""

import ipaddress
import logging
import threading
import time
from collections.abc import Iterable

from fastapi import HTTPException, Request, status

logger = logging.getLogger(__name__)

MAX_ADDRESSES = 10_000  # bounded memory under a spray of addresses

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed (none by default)."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(text, strict=False) for text in networks
        )

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, request: Request) -> str:
        """The address of the client that sent ``request``."""
        peer = request.client.host if request.client is not None else "unknown"
        if peer not in self:
            return peer
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0] if hops else peer


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
