"""Which address a request comes from, and which proxies may say so.

The client address is the peer of the connection; ``X-Forwarded-For`` (and, for the
server's own origin, ``X-Forwarded-Proto`` and ``X-Forwarded-Host``) is read only when
that peer is one of ``web_trusted_proxies``: then the client is the address nearest the
proxy that is not itself a trusted proxy.
"""

import ipaddress
from collections.abc import Iterable

from fastapi import Request

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
                return hop if _is_address(hop) else peer
        return hops[0] if hops else peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
