"""Authentication: a bearer token, HTTP basic user/password, or the session cookie the
login form sets. Everything but ``/health`` and the login form requires one of them.

With neither ``web_token`` nor ``web_user``/``web_password`` configured, a random token
is made at start-up and written (mode 0600) to ``{data}/web-token``.
"""

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request, status

from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

SESSION_COOKIE = "dicomflow_session"
TOKEN_FILE = "web-token"


@dataclass(frozen=True)
class Credentials:
    """What a request may present: ``token``, and ``user``/``password`` when configured."""

    token: str
    user: str | None = None
    password: str | None = None

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> "Credentials":
        """The configured credentials; a generated token (saved in the data directory)
        when none are configured."""
        password = settings.web_password.get_secret_value() if settings.web_password else None
        if settings.web_token is not None:
            token = settings.web_token.get_secret_value()
        else:
            token = _stored_token(settings.data_directory.resolve() / TOKEN_FILE)
        if bool(settings.web_user) != bool(password):
            raise ValueError("web_user and web_password must be set together")
        return cls(token, settings.web_user or None, password)

    def session_value(self) -> str:
        """The session cookie's value: a MAC of the token, so the token itself is never
        stored in a browser."""
        return hmac.new(self.token.encode(), b"dicomflow-session", hashlib.sha256).hexdigest()

    def check_login(self, user: str, password: str) -> bool:
        """Whether a login form's fields are valid: user/password, or the token as
        password (with any user name) when no user is configured."""
        if self.user is not None and self.password is not None:
            return _same(user, self.user) and _same(password, self.password)
        return _same(password, self.token)

    def allows(self, request: Request) -> bool:
        """Whether ``request`` carries valid credentials."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is not None and _same(cookie, self.session_value()):
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return _same(value.strip(), self.token)
        if scheme.lower() == "basic" and self.user is not None:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return self.check_login(user, password)
        return False


class Throttle:
    """Failed password logins (the form, HTTP basic) per client address: after ``limit``
    failures within ``window_s`` seconds that address gets 429 for password logins until
    the window has passed, so a password cannot be guessed at speed. Bearer tokens (too
    long to guess) and session cookies are never throttled, so a stale browser tab or a
    shared proxy address cannot lock out scripts that use the token."""

    def __init__(self, limit: int = 10, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, request: Request) -> None:
        """Raise 429 if the request's address failed too often lately."""
        with self._lock:
            recent = self._recent(_client(request))
        if len(recent) >= self.limit:
            retry = max(1, int(recent[0] + self.window_s - time.monotonic()))
            logger.warning("refused login attempts from %s for %d s", _client(request), retry)
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                "too many failed logins; try again later",
                headers={"Retry-After": str(retry)},
            )

    def failed(self, request: Request) -> None:
        address = _client(request)
        with self._lock:
            self._failures[address] = [*self._recent(address), time.monotonic()]
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.pop(next(iter(self._failures)))

    def _recent(self, address: str) -> list[float]:
        oldest = time.monotonic() - self.window_s
        return [when for when in self._failures.get(address, []) if when > oldest]


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def require_auth(request: Request) -> None:
    """FastAPI dependency: 401 unless the request is authenticated (429 after too many
    failures from its address)."""
    credentials: Credentials = request.app.state.context.credentials
    throttle: Throttle = request.app.state.throttle
    basic = request.headers.get("authorization", "").lower().startswith("basic ")
    if basic:
        throttle.check(request)
    if not credentials.allows(request):
        if basic:
            throttle.failed(request)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required",
            headers={"WWW-Authenticate": 'Bearer realm="dicomflow"'},
        )


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _stored_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(24)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(token + "\n")
    logger.warning("no web_token configured: generated one in %s", path)
    return token
