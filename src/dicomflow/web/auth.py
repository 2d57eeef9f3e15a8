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


def require_auth(request: Request) -> None:
    """FastAPI dependency: 401 unless the request is authenticated."""
    credentials: Credentials = request.app.state.context.credentials
    if not credentials.allows(request):
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
