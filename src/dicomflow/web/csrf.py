"""Cross-site request forgery: what a state-changing request must show.

Every POST, PUT, PATCH or DELETE whose ``Origin`` (or, without one, ``Referer``) names
another origin than the server's own is refused with 403, whatever its credentials.
A request authenticated by the session cookie must also carry its session's CSRF token,
in the form field ``csrf_token`` or the header ``X-CSRF-Token``. Requests authenticated
by a bearer token or HTTP basic (API clients: no cookie a browser would add by itself)
need no CSRF token.
"""

import hmac
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, status

from dicomflow.web.proxies import TrustedProxies
from dicomflow.web.sessions import Session

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
DEFAULT_PORTS = {"http": 80, "https": 443}


def changes_state(request: Request) -> bool:
    return request.method.upper() not in SAFE_METHODS


def own_origin(request: Request, proxies: TrustedProxies) -> str:
    """The origin the client addressed: scheme and ``Host``, or what a trusted proxy
    forwarded in ``X-Forwarded-Proto`` and ``X-Forwarded-Host``."""
    scheme = request.url.scheme
    host = request.headers.get("host", "")
    peer = request.client.host if request.client is not None else ""
    if peer in proxies:
        scheme = _first(request.headers.get("x-forwarded-proto")) or scheme
        host = _first(request.headers.get("x-forwarded-host")) or host
    return origin_of(f"{scheme}://{host}")


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower case, without a default port ("null"
    when ``url`` has no scheme or host)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return "null"
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if not scheme or not host:
        return "null"
    host = f"[{host}]" if ":" in host else host
    shown_port = "" if port in (None, DEFAULT_PORTS.get(scheme)) else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def check_origin(request: Request, proxies: TrustedProxies) -> None:
    """403 if a state-changing request comes from a page of another origin."""
    if not changes_state(request):
        return
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value is None:
            continue
        expected = own_origin(request, proxies)
        if origin_of(value) != expected:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f'Cross-origin request refused: {header.title()} "{value[:120]}" is not'
                f' this server\'s origin "{expected}".',
            )
        return


async def check_token(request: Request, session: Session) -> None:
    """403 unless a state-changing request carries ``session``'s CSRF token."""
    if not changes_state(request):
        return
    given = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    if given is None and content_type.startswith(FORMS):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if given is None or not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"The request's {CSRF_FIELD} is missing or does not match this session;"
            " reload the page and try again.",
        )


def _first(value: str | None) -> str:
    return (value or "").split(",")[0].strip()
