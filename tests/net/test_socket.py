"""TCP tuning and exact reads on loopback connections."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from dicomflow.net.socket import TCP_QUICKACK, rearm_quickack, receive_exactly, tune_accepted_socket


@pytest.fixture
def connection_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (client, accepted) pair of TCP sockets on loopback."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
    with client, accepted:
        yield client, accepted


def test_tune_accepted_socket_disables_nagle(
    connection_pair: tuple[socket.socket, socket.socket],
) -> None:
    _, accepted = connection_pair
    tune_accepted_socket(accepted)
    assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.mark.skipif(TCP_QUICKACK is None, reason="TCP_QUICKACK is Linux-only")
def test_rearm_quickack_sets_quickack(connection_pair: tuple[socket.socket, socket.socket]) -> None:
    _, accepted = connection_pair
    assert TCP_QUICKACK is not None
    accepted.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 0)
    rearm_quickack(accepted)
    assert accepted.getsockopt(socket.IPPROTO_TCP, TCP_QUICKACK) == 1


def test_rearm_quickack_ignores_a_closed_socket() -> None:
    closed = socket.socket()
    closed.close()
    rearm_quickack(closed)


def test_receive_exactly_joins_pieces_sent_apart(
    connection_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, accepted = connection_pair
    payload = bytes(range(256)) * 1000

    def send_in_pieces() -> None:
        for start in range(0, len(payload), 70_000):
            client.sendall(payload[start : start + 70_000])
            time.sleep(0.01)

    sender = threading.Thread(target=send_in_pieces)
    sender.start()
    header = receive_exactly(accepted, 6)
    rest = receive_exactly(accepted, len(payload) - 6)
    sender.join()
    assert isinstance(rest, bytearray)
    assert header + rest == payload


def test_receive_exactly_returns_what_came_before_the_peer_closed(
    connection_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, accepted = connection_pair
    client.sendall(b"abc")
    client.close()
    assert receive_exactly(accepted, 10) == b"abc"
    assert receive_exactly(accepted, 10) == b""
