"""TCP tuning for DICOM associations on loopback and LANs.

DIMSE exchanges many small messages in both directions; with Nagle's algorithm
and delayed acknowledgements the two peers wait on each other for tens of
milliseconds per instance. ``TCP_NODELAY`` removes our side's Nagle wait.
``TCP_QUICKACK`` (Linux only) makes the kernel acknowledge at once instead of
holding the ACK back for up to 40 ms while the peer, under Nagle, waits for it
before sending the rest of a PDU. Linux clears ``TCP_QUICKACK`` as it sees fit
after a receive, so :func:`rearm_quickack` must be called after every ``recv``.
"""

import logging
import socket

logger = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def tune_accepted_socket(connection: socket.socket) -> None:
    """Set ``TCP_NODELAY``, ``TCP_QUICKACK`` and large buffers on an accepted connection."""
    try:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    except OSError as exc:
        logger.debug("could not tune socket: %s", exc)
    rearm_quickack(connection)


def rearm_quickack(connection: socket.socket) -> None:
    """Ask the kernel to acknowledge received data at once (no-op where unsupported)."""
    if TCP_QUICKACK is None:
        return
    try:
        connection.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
    except OSError:
        pass  # closed meanwhile, or not TCP: nothing to acknowledge
