"""TCP tuning for DICOM associations on loopback and LANs.

DIMSE exchanges many small messages in both directions; with Nagle's algorithm
and delayed acknowledgements the two peers wait on each other for tens of
milliseconds per instance. ``TCP_NODELAY`` removes the first wait.
"""

import logging
import socket

logger = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def tune_accepted_socket(connection: socket.socket) -> None:
    """Set ``TCP_NODELAY`` and large buffers on an accepted connection."""
    try:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    except OSError as exc:
        logger.debug("could not tune socket: %s", exc)
