"""A bound on connections in a TLS handshake (DICOM TLS, PS3.15 Annex B).

A TLS listener does the handshake in the connection's own thread, before any DICOM
byte arrives, so a peer that connects and never finishes it holds a thread until
its timeout. :class:`PendingHandshakes` keeps at most ``limit`` of them: the
server registers a connection as it accepts it (before a thread is started for
it), and a connection past the limit cuts off the one waiting longest. A flood
of silent connections then costs a bounded number of threads and cannot keep a
real peer out: a handshake takes milliseconds, so the flood would have to open
``limit`` connections within one handshake to cut a real peer off.
"""

import contextlib
import socket
import threading
from collections import OrderedDict

from dicomflow import tls


class PendingHandshakes:
    """The connections whose TLS handshake is under way, oldest first, at most ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        # By id of the accepted socket: a duplicate of it, which stays valid after the
        # handshake's wrapper takes the original's file descriptor over.
        self._pending: OrderedDict[int, socket.socket] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False  # the server is closing: no new handshake waits

    def begin(self, connection: socket.socket) -> None:
        """Count ``connection`` as handshaking; past the limit, cut off the oldest."""
        try:
            duplicate = connection.dup()
        except OSError:
            return  # closed already: its handshake fails at once
        with self._lock:
            if self._closed:
                _cut(duplicate)
                return
            while len(self._pending) >= self.limit:
                _, oldest = self._pending.popitem(last=False)
                _cut(oldest)
            self._pending[id(connection)] = duplicate

    def end(self, connection: socket.socket) -> bool:
        """Stop counting ``connection``; whether it was still counted (False: it was cut
        off to make room for a newer one)."""
        with self._lock:
            duplicate = self._pending.pop(id(connection), None)
        if duplicate is None:
            return False
        duplicate.close()
        return True

    def cut_all(self) -> None:
        """End every connection in its handshake, now and from now on (the server is
        closing)."""
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending.values()), OrderedDict()
        for duplicate in pending:
            _cut(duplicate)

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)


def _cut(duplicate: socket.socket) -> None:
    """End the connection under a handshake: its thread's read fails at once."""
    with contextlib.suppress(OSError):
        duplicate.shutdown(socket.SHUT_RDWR)
    duplicate.close()


def failure(exc: BaseException, *, waited: bool, timeout_s: float) -> str:
    """Why a handshake failed, in one line: OpenSSL's reason, with a hint where it is
    cryptic; ``waited`` False: it was cut off to make room (see above)."""
    if not waited:
        return "too many connections in a TLS handshake; the longest waiting was dropped"
    if isinstance(exc, TimeoutError):
        return f"no TLS handshake within {timeout_s:.0f}s"
    reason = tls.describe(exc)
    if reason in ("wrong version number", "http request", "unknown protocol"):
        return f"{reason} (the peer does not speak TLS: plain DICOM on the TLS port?)"
    return reason
