"""Authentication: a bearer token, HTTP basic user/password, or the session cookie the
login form sets. Everything but ``/health`` and the login form requires one of them;
state-changing requests also pass the CSRF checks of :mod:`~dicomflow.web.csrf`.

With neither ``web_token`` nor ``web_user``/``web_password`` configured, a random token
is made at start-up and written (mode 0600) to ``{data}/web-token``.
"""

import base64
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request, status

from dicomflow.logs import make_private_folders
from dicomflow.settings import NodeSettings
from dicomflow.web.csrf import check_origin, check_token
from dicomflow.web.proxies import TrustedProxies
from dicomflow.web.sessions import SESSION_COOKIE, Session, SessionStore
from dicomflow.web.throttle import Throttle

logger = logging.getLogger(__name__)

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

    def is_token(self, given: str) -> bool:
        return _same(given, self.token)

    def check_login(self, user: str, password: str) -> bool:
        """Whether a login form's fields are valid: user/password, or the token as
        password (with any user name) when no user is configured."""
        if self.user is not None and self.password is not None:
            return _same(user, self.user) and _same(password, self.password)
        return _same(password, self.token)


@dataclass
class Guard:
    """What a web application checks requests with: its sessions, the login throttle and
    the proxies whose forwarded headers it believes."""

    sessions: SessionStore
    throttle: Throttle
    proxies: TrustedProxies

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> "Guard":
        lifetime_s = settings.web_session_hours * 3600.0
        return cls(
            SessionStore(lifetime_s), Throttle(), TrustedProxies(settings.web_trusted_proxies)
        )

    def password_login(self, request: Request, user: str, password: str) -> bool:
        """Whether a user/password (login form, HTTP basic) is valid. The token (as the
        password when no user is configured) is always accepted; other attempts from an
        address with too many recent failures get 429, and a wrong one counts as a
        failure of that address."""
        credentials: Credentials = request.app.state.context.credentials
        if credentials.user is None and credentials.is_token(password):
            return True
        address = self.proxies.client(request)
        self.throttle.check(address)
        if credentials.check_login(user, password):
            return True
        self.throttle.failed(address)
        return False

    def authenticate(self, request: Request) -> Session | None:
        """The session of a request authenticated by its cookie, None for one
        authenticated by a bearer token or HTTP basic; 401 (429) otherwise."""
        credentials: Credentials = request.app.state.context.credentials
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.is_token(value.strip()):
            request.state.audit_user = "token"
            return None
        if scheme.lower() == "basic":
            user, password = _basic(value)
            if password is not None and self.password_login(request, user, password):
                request.state.audit_user = credentials.user or "token"
                return None
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            request.state.audit_user = credentials.user or "token"  # who logged in
            return session
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "authentication required",
            headers={"WWW-Authenticate": 'Bearer realm="dicomflow"'},
        )


def _basic(value: str) -> tuple[str, str | None]:
    try:
        user, _, password = base64.b64decode(value.strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", None
    return user, password


def guard_of(request: Request) -> Guard:
    guard: Guard = request.app.state.guard
    return guard


async def require_auth(request: Request) -> None:
    """FastAPI dependency: 403 for a state-changing request from another origin or, with
    the session cookie, without the session's CSRF token; 401 unless the request is
    authenticated (429 for password attempts after too many failures from its address).
    The session, if any, is left in ``request.state.session`` for the pages' forms."""
    guard = guard_of(request)
    check_origin(request, guard.proxies)
    session = guard.authenticate(request)
    request.state.session = session
    if session is not None:
        await check_token(request, session)


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
    make_private_folders(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(token + "\n")
    logger.warning("no web_token configured: generated one in %s", path)
    return token
