"""Every dashboard, API and DICOMweb request in the audit trail (:mod:`dicomflow.audit`).

One :class:`~dicomflow.audit.HttpAudit` per request: the client (as
:class:`~dicomflow.web.proxies.TrustedProxies` sees it), the user it authenticated
as (``request.state.audit_user``: the configured ``web_user``, or ``token``), the
method, the path without its query string (QIDO-RS queries carry patient names and
IDs), the status, whether it came over HTTPS, how long it took and, for STOW-RS, how
many instances were stored (``request.state.audit_stored``).

Not recorded, as they say nothing about who saw or sent which data and would bury the
rest: ``/static`` (the dashboard's scripts and styles), ``/health`` (an unauthenticated
liveness probe, polled every few seconds) and ``/metrics`` when answered (Prometheus
scrapes its aggregate counters every few seconds; a refused ``/metrics`` request is
recorded).
"""

import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomflow import audit

QUIET_PREFIXES = ("/static/",)
QUIET_PATHS = frozenset({"/health"})
QUIET_WHEN_ANSWERED = frozenset({"/metrics"})
USER = "audit_user"
STORED = "audit_stored"


def recorded(path: str, status: int) -> bool:
    """Whether a request for ``path`` answered with ``status`` goes into the audit trail."""
    if path.startswith(QUIET_PREFIXES) or path in QUIET_PATHS:
        return False
    return not (path in QUIET_WHEN_ANSWERED and status < 400)


class AccessAudit:
    """ASGI middleware writing one audit record per HTTP request (when the audit log
    is configured)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audit.enabled():
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # what the routes leave in request.state
        started, clock = time.time(), time.perf_counter()
        status = 500  # unless a response starts

        async def send_noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noted)
        finally:
            if recorded(str(scope.get("path", "")), status):
                duration_ms = (time.perf_counter() - clock) * 1000
                audit.emit(_record(scope, state, status, started, duration_ms))


def _record(
    scope: Scope, state: dict[str, object], status: int, started: float, duration_ms: float
) -> audit.HttpAudit:
    request = Request(scope)
    stored = state.get(STORED, 0)
    return audit.HttpAudit(
        client_ip=request.app.state.guard.proxies.client(request),
        user=str(state.get(USER, "")),
        method=request.method,
        path=str(scope.get("path", "")),
        status=status,
        tls=scope.get("scheme") == "https",
        started=started,
        duration_ms=duration_ms,
        stored=stored if isinstance(stored, int) else 0,
    )
