"""DICOM TLS on both receivers, with dcmtk's echoscu/storescu ``+tls`` as the peers."""

import contextlib
import logging
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest

from dicomflow import tls
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.net import acceptor, pynetdicom_acceptor
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.storage import ReceivedInstance
from dicomflow.tls import SelfSigned, TLSFiles

RECEIVERS = [pytest.param(LeanStoreSCP, id="lean"), pytest.param(StoreSCP, id="pynetdicom")]
LOGGERS = ("dicomflow.net.acceptor", "dicomflow.net.pynetdicom_acceptor")


@dataclass(frozen=True)
class Pairs:
    node: SelfSigned
    client: SelfSigned
    stranger: SelfSigned  # trusted by nobody


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    root = tmp_path_factory.mktemp("tls")
    return Pairs(
        tls.make_self_signed(root / "node", common_name="node"),
        tls.make_self_signed(root / "client", common_name="client"),
        tls.make_self_signed(root / "stranger", common_name="stranger"),
    )


def mutual(pairs: Pairs) -> ssl.SSLContext:
    """The node's context: its pair, and only the client's certificate trusted."""
    return tls.server_context(
        TLSFiles(pairs.node.certificate, pairs.node.private_key, pairs.client.certificate)
    )


@dataclass
class Received:
    """What a receiver under test stored and refused."""

    scp: Any
    stored: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)

    def store(self, instance: ReceivedInstance) -> int:
        self.stored.append(instance.sop_instance_uid)
        return 0x0000


@contextlib.contextmanager
def receiving(
    receiver_class: Any, context: ssl.SSLContext | None, **options: Any
) -> Iterator[Received]:
    received = Received(scp=None)
    received.scp = receiver_class(
        ae_title="DICOMFLOW",
        ip="127.0.0.1",
        port=0,
        on_store=received.store,
        on_refused=lambda kind, value: received.refused.append((kind, value)),
        tls=context,
        **options,
    )
    try:
        yield received
    finally:
        received.scp.close()


def dcmtk(
    tool: str,
    port: int,
    *,
    identity: SelfSigned | None,
    trust: Path | None,
    files: list[Path] | None = None,
) -> subprocess.CompletedProcess[str]:
    """echoscu/storescu over TLS with ``identity`` as client certificate (``+tla``: none),
    trusting ``trust``; plain DICOM when ``trust`` is None."""
    secure: list[str] = []
    if trust is not None:
        own = ["+tls", str(identity.private_key), str(identity.certificate)] if identity else []
        secure = [*(own or ["+tla"]), "+cf", str(trust)]
    command = [tool, "-to", "20", "-aet", "TLSSCU", "-aec", "DICOMFLOW", *secure]
    command += ["127.0.0.1", str(port), *map(str, files or [])]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def uids(paths: list[Path]) -> list[str]:
    return [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name in LOGGERS and "TLS handshake failed" in record.getMessage()
    ]


@pytest.mark.parametrize("receiver_class", RECEIVERS)
def test_storescu_over_mutual_tls_stores_every_instance(
    receiver_class: Any, pairs: Pairs, tmp_path: Path
) -> None:
    files = write_series(make_ct_series(3, rows=32, columns=32), tmp_path / "series")
    with receiving(receiver_class, mutual(pairs)) as received:
        port = received.scp.port
        echo = dcmtk("echoscu", port, identity=pairs.client, trust=pairs.node.certificate)
        store = dcmtk(
            "storescu", port, identity=pairs.client, trust=pairs.node.certificate, files=files
        )
    assert echo.returncode == 0, echo.stderr
    assert store.returncode == 0, store.stderr
    assert received.stored == uids(files)
    assert received.refused == []


@pytest.mark.parametrize("receiver_class", RECEIVERS)
@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        pytest.param("none", "peer did not return a certificate", id="no-certificate"),
        pytest.param("stranger", "self-signed certificate", id="untrusted"),
        pytest.param("plain", "the peer does not speak TLS", id="plain-dicom"),
    ],
)
def test_a_peer_failing_the_handshake_is_refused_with_one_log_line(
    receiver_class: Any,
    peer: str,
    reason: str,
    pairs: Pairs,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = write_series(make_ct_series(1, rows=16, columns=16), tmp_path / "series")
    identity = pairs.stranger if peer == "stranger" else None
    trust = None if peer == "plain" else pairs.node.certificate
    caplog.set_level(logging.WARNING)
    with receiving(receiver_class, mutual(pairs)) as received:
        result = dcmtk("storescu", received.scp.port, identity=identity, trust=trust, files=files)
        deadline = time.monotonic() + 5
        while not received.refused and time.monotonic() < deadline:
            time.sleep(0.05)
    assert result.returncode != 0
    assert received.stored == []
    assert received.refused == [("tls", "127.0.0.1")]
    lines = refusals(caplog)
    assert len(lines) == 1, lines
    assert "from 127.0.0.1" in lines[0]
    assert reason in lines[0]


@pytest.mark.parametrize("receiver_class", RECEIVERS)
def test_tls_1_1_is_refused(
    receiver_class: Any, pairs: Pairs, caplog: pytest.LogCaptureFixture
) -> None:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = ssl.TLSVersion.TLSv1_1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("ALL:@SECLEVEL=0")
    caplog.set_level(logging.WARNING)
    with receiving(receiver_class, mutual(pairs)) as received:
        port = received.scp.port
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            pytest.raises(ssl.SSLError),
        ):
            client.wrap_socket(raw).close()
        deadline = time.monotonic() + 5
        while not received.refused and time.monotonic() < deadline:
            time.sleep(0.05)
    assert received.refused == [("tls", "127.0.0.1")]
    assert any("unsupported protocol" in line for line in refusals(caplog)), refusals(caplog)


def test_the_lean_association_notes_its_tls_version_and_peer_certificate(
    pairs: Pairs, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []
    run = acceptor._Association.run

    def noting(association: Any) -> None:
        run(association)
        seen.append((association.tls_version, association.peer_certificate))

    monkeypatch.setattr(acceptor._Association, "run", noting)
    with receiving(LeanStoreSCP, mutual(pairs)) as secure, receiving(LeanStoreSCP, None) as plain:
        trust = pairs.node.certificate
        assert dcmtk("echoscu", secure.scp.port, identity=pairs.client, trust=trust).returncode == 0
        assert dcmtk("echoscu", plain.scp.port, identity=None, trust=None).returncode == 0
    assert seen == [("TLSv1.3", "client"), ("", "")]


def test_the_pynetdicom_association_notes_its_tls_version_and_peer_certificate(
    pairs: Pairs, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str]] = []
    note = pynetdicom_acceptor._note_transport

    def noting(event: Any) -> None:
        note(event)
        seen.append((event.assoc.tls_version, event.assoc.peer_certificate))

    monkeypatch.setattr(pynetdicom_acceptor, "_note_transport", noting)
    with receiving(StoreSCP, mutual(pairs)) as secure, receiving(StoreSCP, None) as plain:
        trust = pairs.node.certificate
        assert dcmtk("echoscu", secure.scp.port, identity=pairs.client, trust=trust).returncode == 0
        assert dcmtk("echoscu", plain.scp.port, identity=None, trust=None).returncode == 0
    assert seen == [("TLSv1.3", "client"), ("", "")]


FLOOD = 120  # silent connections, far more than the bound below
BOUND = 8  # maximum_associations, and so connections in a handshake at once


@pytest.mark.parametrize("receiver_class", RECEIVERS)
def test_a_flood_of_silent_connections_does_not_keep_storescu_out(
    receiver_class: Any, pairs: Pairs, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections that never start their handshake hold at most BOUND threads (the
    oldest is dropped for a newer one), and a real peer gets in at once, long before
    the request timeout would have freed anything."""
    files = write_series(make_ct_series(3, rows=16, columns=16), tmp_path / "series")
    caplog.set_level(logging.WARNING)
    options = {"maximum_associations": BOUND, "request_timeout_s": 60.0}
    with receiving(receiver_class, mutual(pairs), **options) as received:
        before = threading.active_count()
        flood = [
            socket.create_connection(("127.0.0.1", received.scp.port), timeout=5)
            for _ in range(FLOOD)
        ]
        try:
            settle = time.monotonic() + 5  # the dropped connections' threads end
            while threading.active_count() > before + BOUND and time.monotonic() < settle:
                time.sleep(0.05)
            held = threading.active_count() - before
            started = time.monotonic()
            result = dcmtk(
                "storescu",
                received.scp.port,
                identity=pairs.client,
                trust=pairs.node.certificate,
                files=files,
            )
            elapsed = time.monotonic() - started
        finally:
            for connection in flood:
                connection.close()
    assert result.returncode == 0, result.stderr
    assert elapsed < 10
    assert received.stored == uids(files)
    assert held <= BOUND, f"{held} threads for {FLOOD} silent connections"
    dropped = [line for line in refusals(caplog) if "too many connections" in line]
    assert len(dropped) >= FLOOD - BOUND


@pytest.mark.parametrize("receiver_class", RECEIVERS)
def test_a_silent_connection_is_dropped_after_the_request_timeout(
    receiver_class: Any, pairs: Pairs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with receiving(receiver_class, mutual(pairs), request_timeout_s=1.0) as received:
        with socket.create_connection(("127.0.0.1", received.scp.port), timeout=5) as silent:
            started = time.monotonic()
            silent.settimeout(4)
            with contextlib.suppress(ConnectionResetError):
                assert silent.recv(1024) == b""  # closed by the receiver
            elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while not received.refused and time.monotonic() < deadline:
            time.sleep(0.05)
    assert 0.8 < elapsed < 3.0
    assert received.refused == [("tls", "127.0.0.1")]
    assert any("no TLS handshake within 1s" in line for line in refusals(caplog))


@pytest.mark.parametrize("receiver_class", RECEIVERS)
def test_closing_cuts_off_connections_in_a_handshake(receiver_class: Any, pairs: Pairs) -> None:
    with receiving(receiver_class, mutual(pairs), request_timeout_s=60.0) as received:
        silent = socket.create_connection(("127.0.0.1", received.scp.port), timeout=5)
        deadline = time.monotonic() + 5
        while not len(received.scp.handshakes) and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
    took = time.monotonic() - started
    with silent:
        silent.settimeout(2)
        with contextlib.suppress(ConnectionResetError):
            assert silent.recv(1024) == b""
    assert took < 3.0
