"""The requestor over DICOM TLS against dcmtk's ``storescp +tls``: trusted and untrusted
servers, mutual TLS, plain peers, large instances through the batched TLS writes."""

import socket
import ssl
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import PeerUnreachableError, TLSConfigurationError
from dicomflow.net import pdu, requestor
from dicomflow.net.requestor import echo, send
from dicomflow.settings import parse_endpoint
from dicomflow.tls import SelfSigned, TLSFiles, make_self_signed
from support import StoreSCPPeer
from support import sop_uids as uids


def test_send_over_tls_delivers_every_instance(
    tmp_path: Path, tls_pacs: StoreSCPPeer, server_pair: SelfSigned
):
    files = write_series(make_ct_series(5, rows=64, columns=64), tmp_path / "series")
    address = parse_endpoint(tls_pacs.endpoint())
    assert address.tls
    report = send(address, files, tls=TLSFiles(ca_certificates=server_pair.certificate))
    assert report.ok and len(report.sent) == len(files)
    assert uids(tls_pacs.files()) == uids(files)


def test_the_association_records_the_tls_version(tls_pacs: StoreSCPPeer, server_pair: SelfSigned):
    address = parse_endpoint(tls_pacs.endpoint())
    context = requestor.client_tls_context(
        address, TLSFiles(ca_certificates=server_pair.certificate)
    )
    association = requestor._Association.open(
        address, "NODE", [(pdu.VERIFICATION, "1.2.840.10008.1.2")], context
    )
    try:
        assert association.tls_version in {"TLSv1.2", "TLSv1.3"}
        assert isinstance(association.connection, ssl.SSLSocket)
        assert association.echo() == 0x0000
    finally:
        association.release()


def test_a_plain_association_has_no_tls_version(storescp: StoreSCPPeer):
    address = Address("127.0.0.1", storescp.port, "PACS")
    association = requestor._Association.open(
        address, "NODE", [(pdu.VERIFICATION, "1.2.840.10008.1.2")]
    )
    try:
        assert association.tls_version == ""
    finally:
        association.release()


def test_large_instances_arrive_whole_over_tls(
    tmp_path: Path, tls_pacs: StoreSCPPeer, server_pair: SelfSigned
):
    """512x512 CT instances: many PDUs joined into batched TLS writes, byte for byte."""
    files = write_series(make_ct_series(3, rows=512, columns=512), tmp_path / "large")
    report = send(
        parse_endpoint(tls_pacs.endpoint()),
        files,
        tls=TLSFiles(ca_certificates=server_pair.certificate),
    )
    assert report.ok, report.failed
    received = {str(dcmread(p).SOPInstanceUID): dcmread(p).PixelData for p in tls_pacs.files()}
    for path in files:
        dataset = dcmread(path)
        assert received[str(dataset.SOPInstanceUID)] == dataset.PixelData


def test_echo_over_tls(tls_pacs: StoreSCPPeer, server_pair: SelfSigned):
    echo(parse_endpoint(tls_pacs.endpoint()), tls=TLSFiles(ca_certificates=server_pair.certificate))


def test_an_untrusted_server_certificate_is_refused_naming_the_peer(
    tmp_path: Path, tls_pacs: StoreSCPPeer, client_pair: SelfSigned
):
    files = write_series(make_ct_series(2), tmp_path / "series")
    address = parse_endpoint(tls_pacs.endpoint())
    with pytest.raises(PeerUnreachableError) as caught:
        send(address, files, tls=TLSFiles(ca_certificates=client_pair.certificate))
    message = str(caught.value)
    assert f"PACS@127.0.0.1:{tls_pacs.port}" in message
    assert "TLS handshake failed" in message and "not trusted" in message
    assert "\n" not in message
    assert tls_pacs.files() == [], "nothing delivered"


def test_the_system_store_does_not_trust_a_self_signed_peer(tls_pacs: StoreSCPPeer):
    """An Address with ``tls`` and no files: the system's trust store, which does not
    know the test certificate."""
    with pytest.raises(PeerUnreachableError, match="not trusted"):
        echo(parse_endpoint(tls_pacs.endpoint()))


def test_mutual_tls_needs_our_client_certificate(
    tmp_path: Path, mutual_pacs: StoreSCPPeer, server_pair: SelfSigned, client_pair: SelfSigned
):
    files = write_series(make_ct_series(3), tmp_path / "series")
    address = parse_endpoint(mutual_pacs.endpoint())
    with pytest.raises(PeerUnreachableError) as caught:
        send(address, files, tls=TLSFiles(ca_certificates=server_pair.certificate))
    assert f"PACS@127.0.0.1:{mutual_pacs.port}" in str(caught.value)
    assert "TLS" in str(caught.value)
    identity = TLSFiles(client_pair.certificate, client_pair.private_key, server_pair.certificate)
    report = send(address, files, tls=identity)
    assert report.ok and uids(mutual_pacs.files()) == uids(files)


def test_mutual_tls_refuses_a_client_certificate_it_does_not_trust(
    tmp_path: Path, mutual_pacs: StoreSCPPeer, server_pair: SelfSigned
):
    stranger = make_self_signed(tmp_path / "stranger", common_name="stranger")
    identity = TLSFiles(stranger.certificate, stranger.private_key, server_pair.certificate)
    with pytest.raises(PeerUnreachableError, match=f"127.0.0.1:{mutual_pacs.port}"):
        echo(parse_endpoint(mutual_pacs.endpoint()), tls=identity)


def test_tls_to_a_plain_peer_fails_in_one_line(storescp: StoreSCPPeer, server_pair: SelfSigned):
    address = Address("127.0.0.1", storescp.port, "PACS", tls=True)
    with pytest.raises(PeerUnreachableError) as caught:
        echo(address, tls=TLSFiles(ca_certificates=server_pair.certificate))
    assert "TLS handshake failed" in str(caught.value)
    assert f"127.0.0.1:{storescp.port}" in str(caught.value)


def test_a_peer_that_never_answers_the_handshake_times_out(
    monkeypatch: pytest.MonkeyPatch, server_pair: SelfSigned
):
    monkeypatch.setattr(requestor, "ACSE_TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = Address("127.0.0.1", silent.getsockname()[1], "PACS", tls=True)
        with pytest.raises(PeerUnreachableError, match="TLS handshake failed"):
            echo(address, tls=TLSFiles(ca_certificates=server_pair.certificate))


def test_a_bad_trust_file_is_a_configuration_error(tmp_path: Path, tls_pacs: StoreSCPPeer):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    address = parse_endpoint(tls_pacs.endpoint())
    with pytest.raises(TLSConfigurationError, match="tls_ca_certificates"):
        echo(address, tls=TLSFiles(ca_certificates=bogus))
    with pytest.raises(TLSConfigurationError, match="cannot be read"):
        send(address, [tmp_path / "x.dcm"], tls=TLSFiles(ca_certificates=tmp_path / "missing"))


def test_the_process_files_are_used_for_an_address_with_tls(
    monkeypatch: pytest.MonkeyPatch, tls_pacs: StoreSCPPeer, server_pair: SelfSigned
):
    """A worker sets the node's files once; pipeline code sends without naming them."""
    monkeypatch.setattr(requestor, "_process_tls", requestor._process_tls)
    requestor.use_client_tls(TLSFiles(ca_certificates=server_pair.certificate))
    echo(parse_endpoint(tls_pacs.endpoint()))


def test_send_views_batches_over_tls_and_keeps_the_order():
    """A TLS socket has no sendmsg: small views are joined into few writes, in order."""

    class Recorder(ssl.SSLSocket):
        def __init__(self) -> None:  # no real socket: only sendall is used
            self.writes: list[bytes] = []

        def sendall(self, data, flags=0) -> None:  # type: ignore[no-untyped-def]
            self.writes.append(bytes(data))

    views = [bytes([n % 256]) * 1000 for n in range(3000)]  # about 3 MB of small views
    recorder = Recorder.__new__(Recorder)
    Recorder.__init__(recorder)
    pdu.send_views(recorder, views)
    assert b"".join(recorder.writes) == b"".join(views)
    assert len(recorder.writes) <= 3000 * 1000 // pdu.TLS_BATCH_BYTES + 1
