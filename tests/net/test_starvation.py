"""Connections that never associate, or crawl, cannot take the receiver's slots or memory."""

import contextlib
import socket
import struct
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydicom.uid import UID
from pynetdicom import AE

from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.storage import ReceivedInstance
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor
from support import association_request

VERIFICATION = UID("1.2.840.10008.1.1")
IDLE_CONNECTIONS = 64  # the receiver's default association limit
MiB = 1 << 20


def stored(instance: ReceivedInstance) -> int:
    return 0x0000


@pytest.fixture
def receiver() -> Iterator[LeanStoreSCP]:
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=stored, maximum_associations=64
    )
    yield scp
    scp.close()


def echoscu(port: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """dcmtk's echoscu against ``port``, and how long it took."""
    started = time.monotonic()
    command = ["echoscu", "-to", "20", "-aet", "ECHOSCU", "-aec", "DICOMFLOW"]
    result = subprocess.run(
        [*command, "127.0.0.1", str(port)], capture_output=True, text=True, timeout=30
    )
    return result, time.monotonic() - started


def silent(connection: socket.socket) -> None:
    """Connects and sends nothing."""


def p_data_header(connection: socket.socket) -> None:
    """A P-DATA-TF header declaring 16 MiB, before any association."""
    connection.sendall(struct.pack(">BBI", 0x04, 0, 16 * MiB))


def trickle_start(connection: socket.socket) -> None:
    """The first byte of an A-ASSOCIATE-RQ; :func:`trickle` sends the rest, slowly."""
    connection.sendall(b"\x01")


@pytest.mark.parametrize("start", [silent, p_data_header, trickle_start])
def test_idle_connections_take_no_slot_and_no_memory(
    receiver: LeanStoreSCP, start: Callable[[socket.socket], None]
) -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        connections = [
            socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
            for _ in range(IDLE_CONNECTIONS)
        ]
        for connection in connections:
            start(connection)
        stop = threading.Event()
        crawler = threading.Thread(target=crawl, args=(connections, stop, start), daemon=True)
        crawler.start()
        time.sleep(0.5)  # every connection accepted and waiting in its own thread
        held = tracemalloc.get_traced_memory()[0] - before
        result, elapsed = echoscu(receiver.port)
        stop.set()
        crawler.join()
        for connection in connections:
            connection.close()
    finally:
        tracemalloc.stop()
    assert result.returncode == 0, result.stderr
    assert elapsed < 3.0
    assert held < 8 * MiB, f"{held / MiB:.1f} MiB held for {IDLE_CONNECTIONS} idle connections"


def crawl(
    connections: list[socket.socket],
    stop: threading.Event,
    start: Callable[[socket.socket], None],
) -> None:
    """For trickling connections, one more byte of an A-ASSOCIATE-RQ on each every 0.2 s."""
    if start is not trickle_start:
        return
    request = association_request()
    position = 1
    while not stop.wait(0.2) and position < len(request):
        for connection in connections:
            connection.sendall(request[position : position + 1])
        position += 1


def closed_by_peer(connection: socket.socket, within_s: float) -> float | None:
    """Seconds until the peer closes ``connection`` (an A-ABORT may come first), or None."""
    started = time.monotonic()
    connection.settimeout(0.1)
    while time.monotonic() - started < within_s:
        try:
            if not connection.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - started
    return None


def test_an_association_request_sent_a_byte_at_a_time_is_cut_off_at_its_deadline() -> None:
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=stored, request_timeout_s=1.0
    )
    request = association_request()
    try:
        with socket.create_connection(("127.0.0.1", scp.port), timeout=5) as connection:
            started = time.monotonic()
            with contextlib.suppress(OSError):  # until the receiver closes the connection
                for byte in request[:20]:  # each byte well within any per-receive timeout
                    connection.sendall(bytes((byte,)))
                    time.sleep(0.2)
            assert closed_by_peer(connection, within_s=3.0) is not None
            assert 0.9 < time.monotonic() - started < 2.5
    finally:
        scp.close()


def test_an_association_that_crawls_is_aborted_after_the_idle_timeout() -> None:
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=stored, idle_timeout_s=1.0
    )
    try:
        ae = AE(ae_title="CRAWLER")
        ae.add_requested_context(VERIFICATION)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="DICOMFLOW")
        assert assoc.is_established
        raw = assoc.dul.socket.socket
        started = time.monotonic()
        raw.sendall(struct.pack(">BBI", 0x04, 0, 1000))  # a P-DATA-TF, then a byte at a time
        while not assoc.is_aborted and time.monotonic() - started < 4.0:
            try:
                raw.sendall(b"\x00")
            except OSError:  # aborted: closed by the node, or by pynetdicom after the A-ABORT
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 2.0  # pynetdicom's reactor notes the A-ABORT it read
        while not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
        assert elapsed < 2.5
    finally:
        scp.close()


class HeldInstance(AbstractInput):
    def validate(self) -> bool:
        return False


class KeepingPipeline(AbstractPipeline):
    input = {"any": HeldInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: object) -> None:
            return None


def test_the_node_takes_its_association_limits_from_its_settings(make_node: Any) -> None:
    node = make_node(
        KeepingPipeline,
        maximum_associations=1,
        association_request_timeout_s=0.5,
        association_idle_timeout_s=1.0,
    )
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as connection:
        assert closed_by_peer(connection, within_s=3.0) is not None
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context(VERIFICATION)
    holder = ae.associate("127.0.0.1", node.port, ae_title="DICOMFLOW")
    assert holder.is_established

    refused, _ = echoscu(node.port)  # the one slot is taken
    assert "Local Limit Exceeded" in refused.stdout + refused.stderr

    holder.join(4.0)  # idle for longer than association_idle_timeout_s
    assert holder.is_aborted
    assert echoscu(node.port)[0].returncode == 0
