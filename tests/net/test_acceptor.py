"""The lean receiver against peers that break the protocol, and its limits."""

import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from dicomflow import metrics
from dicomflow.dicom.factory import make_ct_series
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.storage import AccessPolicy, ReceivedInstance
from support import wait_for

VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")


class Peer:
    """A lean SCP counting stores and ended associations."""

    def __init__(self, **options: Any) -> None:
        self.stored: list[ReceivedInstance] = []
        self.ended: list[int] = []
        self.refused: list[tuple[str, str]] = []
        self.released = threading.Event()
        self.scp = LeanStoreSCP(
            ae_title="DICOMFLOW",
            ip="127.0.0.1",
            port=0,
            on_store=self._store,
            on_release=self._release,
            on_refused=lambda reason, value: self.refused.append((reason, value)),
            **options,
        )

    def _store(self, instance: ReceivedInstance) -> int:
        self.stored.append(instance)
        return 0x0000

    def _release(self, association_id: int) -> None:
        self.ended.append(association_id)
        self.released.set()


@pytest.fixture
def peer() -> Iterator[Peer]:
    running = Peer()
    yield running
    running.scp.close()


def requestor(*contexts: str) -> AE:
    ae = AE(ae_title="REQUESTOR")
    for context in contexts or (VERIFICATION, CTImageStorage):
        ae.add_requested_context(context)
    return ae


def read_pdu(connection: socket.socket) -> tuple[int, bytes]:
    header = b""
    while len(header) < 6:
        chunk = connection.recv(6 - len(header))
        if not chunk:
            return 0, b""
        header += chunk
    pdu_type, _, length = struct.unpack(">BBI", header)
    body = b""
    while len(body) < length:
        body += connection.recv(length - len(body))
    return pdu_type, body


def test_garbage_instead_of_an_association_request_is_aborted(peer: Peer) -> None:
    with socket.create_connection(("127.0.0.1", peer.scp.port), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        pdu_type, _ = read_pdu(connection)
        assert pdu_type == 0x07  # A-ABORT
    assert not peer.stored and not peer.ended  # no association was established


def test_an_oversized_association_request_is_aborted(peer: Peer) -> None:
    with socket.create_connection(("127.0.0.1", peer.scp.port), timeout=5) as connection:
        connection.sendall(struct.pack(">BBI", 0x01, 0, 50_000_000))
        pdu_type, _ = read_pdu(connection)
        assert pdu_type == 0x07


def test_unsupported_contexts_are_refused_and_the_rest_accepted(peer: Peer) -> None:
    assoc = requestor(PATIENT_ROOT_FIND, VERIFICATION).associate(
        "127.0.0.1", peer.scp.port, ae_title="DICOMFLOW"
    )
    assert assoc.is_established
    results = {str(c.abstract_syntax): c.result for c in assoc.accepted_contexts}
    assert str(VERIFICATION) in results and str(PATIENT_ROOT_FIND) not in results
    assert [str(c.abstract_syntax) for c in assoc.rejected_contexts] == [str(PATIENT_ROOT_FIND)]
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert peer.released.wait(2)


def test_an_unknown_calling_ae_title_gets_an_association_reject() -> None:
    guarded = Peer(policy=AccessPolicy.build(["MODALITY"], []))
    try:
        assoc = requestor().associate("127.0.0.1", guarded.scp.port, ae_title="DICOMFLOW")
        assert assoc.is_rejected
        assert guarded.refused == [("ae_title", "REQUESTOR")]
    finally:
        guarded.scp.close()


def test_a_pdv_on_a_context_that_was_not_accepted_aborts(peer: Peer) -> None:
    assoc = requestor().associate("127.0.0.1", peer.scp.port, ae_title="DICOMFLOW")
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    pdv = struct.pack(">IBB", 2 + 4, 99, 0x03) + b"\x00\x00\x00\x00"
    raw.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
    assoc.join(5)
    assert assoc.is_aborted
    assert peer.released.wait(2) and not peer.stored


def test_a_silent_association_is_aborted_after_the_network_timeout() -> None:
    quiet = Peer(idle_timeout_s=0.3)
    try:
        assoc = requestor().associate("127.0.0.1", quiet.scp.port, ae_title="DICOMFLOW")
        assert assoc.is_established
        assert quiet.released.wait(3)
        assoc.join(3)
        assert assoc.is_aborted
    finally:
        quiet.scp.close()


def test_associations_beyond_the_limit_are_rejected_transiently() -> None:
    limited = Peer(maximum_associations=1)
    try:
        first = requestor().associate("127.0.0.1", limited.scp.port, ae_title="DICOMFLOW")
        assert first.is_established
        second = requestor().associate("127.0.0.1", limited.scp.port, ae_title="DICOMFLOW")
        assert second.is_rejected
        first.release()
        assert limited.released.wait(2)
        third = requestor().associate("127.0.0.1", limited.scp.port, ae_title="DICOMFLOW")
        assert third.is_established
        third.release()
    finally:
        limited.scp.close()


def test_a_p_data_pdu_longer_than_the_advertised_maximum_aborts(peer: Peer) -> None:
    assoc = requestor().associate("127.0.0.1", peer.scp.port, ae_title="DICOMFLOW")
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == peer.scp.maximum_pdu_size  # never "unlimited"
    raw = assoc.dul.socket.socket
    raw.sendall(struct.pack(">BBI", 0x04, 0, 1 << 30))  # claims 1 GiB, sends nothing
    assoc.join(5)
    assert assoc.is_aborted
    assert peer.released.wait(2) and not peer.stored


def rejections(reason: str) -> float:
    counted = metrics.REGISTRY.get_sample_value("dicomflow_rejections_total", {"reason": reason})
    return counted or 0.0


def ct_requestor() -> AE:
    ae = AE(ae_title="REQUESTOR")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def enlarged(dataset: Dataset) -> Dataset:
    """``dataset`` with 256 x 256 pixels (128 kB) instead of its own."""
    dataset.PixelData = bytes(256 * 256 * 2)
    dataset.Rows = dataset.Columns = 256
    return dataset


def test_an_instance_over_the_maximum_size_aborts_and_is_counted() -> None:
    small = Peer(maximum_instance_bytes=64 * 1024)
    before = rejections(metrics.REASON_TOO_LARGE)
    try:
        assoc = ct_requestor().associate("127.0.0.1", small.scp.port, ae_title="DICOMFLOW")
        assert assoc.is_established
        [fits, too_large] = make_ct_series(2, rows=64, columns=64)
        assert assoc.send_c_store(fits).Status == 0x0000
        assoc.send_c_store(enlarged(too_large))
        assoc.join(5)
        assert assoc.is_aborted
        assert small.released.wait(2)
        assert [i.sop_instance_uid for i in small.stored] == [fits.SOPInstanceUID]
    finally:
        small.scp.close()
    assert rejections(metrics.REASON_TOO_LARGE) == before + 1


def test_instances_past_the_memory_limit_abort_and_the_memory_is_given_back() -> None:
    tight = Peer(maximum_held_bytes=96 * 1024)
    before = rejections(metrics.REASON_MEMORY)
    try:
        ae = ct_requestor()
        [small, big, after] = make_ct_series(3, rows=64, columns=64)
        assoc = ae.associate("127.0.0.1", tight.scp.port, ae_title="DICOMFLOW")
        assert assoc.send_c_store(small).Status == 0x0000
        # given back once stored (just after the response goes out: the PDU is read on)
        wait_for(lambda: tight.scp._held == 0, timeout_s=5, what="memory given back")
        assoc.send_c_store(enlarged(big))
        assoc.join(5)
        assert assoc.is_aborted
        assert tight.released.wait(2)
        wait_for(lambda: tight.scp._held == 0, timeout_s=5, what="memory given back after abort")
        again = ae.associate("127.0.0.1", tight.scp.port, ae_title="DICOMFLOW")
        assert again.send_c_store(after).Status == 0x0000
        again.release()
    finally:
        tight.scp.close()
    assert rejections(metrics.REASON_MEMORY) == before + 1


def associate_rq_bytes(called: str = "DICOMFLOW") -> bytes:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context
    from pynetdicom.transport import AddressInformation

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "RAW"
    primitive.called_ae_title = called
    primitive.calling_presentation_address = AddressInformation("127.0.0.1", 0)
    primitive.called_presentation_address = AddressInformation("127.0.0.1", 0)
    context = build_context(VERIFICATION)
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def assert_acceptor_leaves_the_close_to_the_peer(connection: socket.socket) -> None:
    """PS3.8 Sta13: after A-ASSOCIATE-RJ or A-ABORT the requestor closes; the acceptor
    closes itself only when its ARTIM timer expires. Closing at once races requestors
    that would then report an abort instead of the rejection."""
    connection.settimeout(0.3)
    with pytest.raises(TimeoutError):
        connection.recv(1)
    connection.settimeout(5)
    assert connection.recv(1) == b""  # ARTIM expired: the acceptor closed


def test_after_an_abort_the_acceptor_waits_for_the_peer_to_close(peer: Peer) -> None:
    with socket.create_connection(("127.0.0.1", peer.scp.port), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_pdu(connection)[0] == 0x07  # A-ABORT
        assert_acceptor_leaves_the_close_to_the_peer(connection)


def test_after_a_rejection_the_acceptor_waits_for_the_peer_to_close() -> None:
    limited = Peer(maximum_associations=1)
    try:
        first = requestor().associate("127.0.0.1", limited.scp.port, ae_title="DICOMFLOW")
        assert first.is_established
        with socket.create_connection(("127.0.0.1", limited.scp.port), timeout=5) as connection:
            connection.sendall(associate_rq_bytes())
            pdu_type, body = read_pdu(connection)
            assert (pdu_type, body[1:4]) == (0x03, bytes((2, 3, 2)))  # transient, local limit
            assert_acceptor_leaves_the_close_to_the_peer(connection)
        first.release()
    finally:
        limited.scp.close()
