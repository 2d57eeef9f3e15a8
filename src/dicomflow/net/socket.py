"""TCP tuning for DICOM associations on loopback and LANs.

DIMSE exchanges many small messages in both directions; with Nagle's algorithm
and delayed acknowledgements the two peers wait on each other for tens of
milliseconds per instance. ``TCP_NODELAY`` removes our side's Nagle wait.
``TCP_QUICKACK`` (Linux only) makes the kernel acknowledge at once instead of
holding the ACK back for up to 40 ms while the peer, under Nagle, waits for it
before sending the rest of a PDU. Linux clears ``TCP_QUICKACK`` as it sees fit
after a receive, so :func:`rearm_quickack` must be called after every ``recv``;
:func:`receive_exactly` does that.
"""

import contextlib
import logging
import socket
import time

logger = logging.getLogger(__name__)

SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
FIRST_READ_BYTES = 256 * 1024  # believed of a declared length before its bytes arrive
GROWTH = 4
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def tune_accepted_socket(connection: socket.socket) -> None:
    """Set ``TCP_NODELAY``, ``TCP_QUICKACK`` and large buffers on an accepted connection."""
    _set_options(connection)
    rearm_quickack(connection)


def tune_requesting_socket(connection: socket.socket) -> None:
    """Set ``TCP_NODELAY`` and large buffers on a socket before it connects to a peer."""
    _set_options(connection)


def _set_options(connection: socket.socket) -> None:
    try:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    except OSError as exc:
        logger.debug("could not tune socket: %s", exc)


def rearm_quickack(connection: socket.socket) -> None:
    """Ask the kernel to acknowledge received data at once (no-op where unsupported)."""
    if TCP_QUICKACK is None:
        return
    # A socket closed meanwhile, or not TCP, has nothing to acknowledge.
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)


def receive_exactly(
    connection: socket.socket, nr_bytes: int, deadline: float | None = None
) -> bytearray:
    """Read ``nr_bytes`` from ``connection``; fewer only if the peer closes the connection.

    Reads straight into one buffer, asking each time for all that is still
    missing, and re-arms ``TCP_QUICKACK`` after every receive. The buffer starts
    at :data:`FIRST_READ_BYTES` and grows fourfold as it fills: a length a peer
    declares costs memory only as its bytes arrive. With a ``deadline`` (a
    :func:`time.monotonic` value) the whole read must end by then, however the
    peer paces its bytes; :class:`TimeoutError` otherwise.
    """
    buffer = bytearray(min(nr_bytes, FIRST_READ_BYTES))
    nr_read = 0
    while nr_read < nr_bytes:
        if nr_read == len(buffer):
            buffer = _grown(buffer, nr_bytes)
        if deadline is not None:
            _time_left(connection, deadline)
        with memoryview(buffer) as view:
            count = connection.recv_into(view[nr_read:], len(buffer) - nr_read)
        if not count:
            break
        nr_read += count
        rearm_quickack(connection)
    if nr_read < len(buffer):
        del buffer[nr_read:]
    return buffer


def _grown(buffer: bytearray, nr_bytes: int) -> bytearray:
    """A buffer four times as large (at most ``nr_bytes``) starting with ``buffer``."""
    larger = bytearray(min(nr_bytes, GROWTH * len(buffer)))
    larger[: len(buffer)] = buffer
    return larger


def _time_left(connection: socket.socket, deadline: float) -> None:
    """Let the next receive on ``connection`` wait only until ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the deadline for a whole read passed")
    connection.settimeout(remaining)
