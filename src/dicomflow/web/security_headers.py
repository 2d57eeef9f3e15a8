"""Security headers on every response: pages, API, DICOMweb, static files and errors.

The Content-Security-Policy allows scripts, styles and images from the server itself
only (the dashboard has no inline script or style), no framing and no form posted
elsewhere. Everything but ``/static`` is ``Cache-Control: no-store`` unless its route
chose a cache policy itself (the rendered thumbnails keep a short private one).
"""

import logging

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
CACHED_PREFIX = "/static/"


def secure(headers: MutableHeaders, path: str) -> None:
    """Add the security headers (and ``no-store`` off ``/static``) to ``headers``."""
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    if not path.startswith(CACHED_PREFIX) and "cache-control" not in headers:
        headers["cache-control"] = "no-store"


class SecurityHeaders:
    """ASGI middleware: :func:`secure` on the start of every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure(MutableHeaders(scope=message), path)
            await send(message)

        await self.app(scope, receive, send_secured)


async def server_error(request: Request, exc: Exception) -> Response:
    """An unexpected error: 500 with the security headers (the traceback goes to the log
    by the server)."""
    response = PlainTextResponse("Internal Server Error", status_code=500)
    secure(response.headers, request.url.path)
    return response
