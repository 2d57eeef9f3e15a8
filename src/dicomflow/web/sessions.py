"""Browser sessions: a random identifier per login, kept in memory, ended by logout.

The cookie holds the identifier only; the store keeps its SHA-256, the session's CSRF
token and its expiry. Sessions end at logout, after ``web_session_hours`` or when the
server restarts.
"""

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

SESSION_COOKIE = "dicomflow_session"
MAX_SESSIONS = 10_000  # the oldest goes first beyond this


@dataclass(frozen=True)
class Session:
    """One login: the token its forms must carry and when it ends (monotonic seconds)."""

    csrf_token: str
    expires: float


class SessionStore:
    """The sessions of one web application."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self) -> tuple[str, Session]:
        """A new session: its cookie value and the session."""
        identifier = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), time.monotonic() + self.lifetime_s)
        with self._lock:
            self._sessions[_digest(identifier)] = session
            if len(self._sessions) > MAX_SESSIONS:
                self._sessions.pop(next(iter(self._sessions)))
        return identifier, session

    def find(self, identifier: str | None) -> Session | None:
        """The live session of a cookie value, if any."""
        if not identifier:
            return None
        key = _digest(identifier)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[key]
                return None
        return session

    def end(self, identifier: str | None) -> bool:
        """End the session of a cookie value; whether there was one."""
        if not identifier:
            return False
        with self._lock:
            return self._sessions.pop(_digest(identifier), None) is not None


def _digest(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()
