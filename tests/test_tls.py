"""TLS contexts and self-signed certificates (dicomflow.tls), with real handshakes."""

import socket
import ssl
import threading
from pathlib import Path

import pytest

from dicomflow.errors import TLSConfigurationError
from dicomflow.tls import (
    SelfSigned,
    TLSFiles,
    client_context,
    describe,
    handshake,
    make_self_signed,
    peer_subject,
    server_context,
)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SelfSigned]:
    root = tmp_path_factory.mktemp("tls")
    return {name: make_self_signed(root / name, common_name=name) for name in ("node", "client")}


def exchange(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[str, str]:
    """One handshake over loopback: (what the server saw of the client, the client's error)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str] = []

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            wrapped = handshake(server, connection, server_side=True, timeout_s=5)
            seen.append(f"{wrapped.version()} {peer_subject(wrapped)}")
            wrapped.sendall(b"ok")
            wrapped.close()
        except (ssl.SSLError, OSError) as exc:
            seen.append(f"refused: {describe(exc)}")
            connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    error = ""
    try:
        wrapped = handshake(
            client, socket.create_connection(listener.getsockname()), server_side=False, timeout_s=5
        )
        if wrapped.recv(2) != b"ok":
            error = "no answer"
        wrapped.close()
    except (ssl.SSLError, OSError) as exc:
        error = describe(exc)
    thread.join()
    listener.close()
    return seen[0], error


def test_mutual_tls_names_the_client_and_uses_tls_1_2_or_newer(pairs: dict[str, SelfSigned]):
    node, client = pairs["node"], pairs["client"]
    server = server_context(TLSFiles(node.certificate, node.private_key, client.certificate))
    sender = client_context(TLSFiles(client.certificate, client.private_key, node.certificate))
    seen, error = exchange(server, sender)
    assert error == ""
    assert seen in ("TLSv1.3 client", "TLSv1.2 client")


def test_mutual_tls_refuses_a_client_without_a_certificate(pairs: dict[str, SelfSigned]):
    node, client = pairs["node"], pairs["client"]
    server = server_context(TLSFiles(node.certificate, node.private_key, client.certificate))
    seen, _ = exchange(server, client_context(TLSFiles(ca_certificates=node.certificate)))
    assert seen.startswith("refused:") and "certificate" in seen


def test_a_sender_refuses_an_untrusted_server(pairs: dict[str, SelfSigned]):
    node, client = pairs["node"], pairs["client"]
    server = server_context(TLSFiles(node.certificate, node.private_key))
    _, error = exchange(server, client_context(TLSFiles(ca_certificates=client.certificate)))
    assert "certificate" in error


def test_tls_1_1_is_refused(pairs: dict[str, SelfSigned]):
    node = pairs["node"]
    server = server_context(TLSFiles(node.certificate, node.private_key))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    seen, error = exchange(server, old)
    assert seen.startswith("refused:") and error


def test_the_private_key_is_written_for_its_owner_only(pairs: dict[str, SelfSigned]):
    assert pairs["node"].private_key.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (lambda p, t: TLSFiles(t / "none.pem", p.private_key), 'tls_certificate "'),
        (lambda p, t: TLSFiles(p.certificate, t / "none.pem"), 'tls_private_key "'),
        (lambda p, t: TLSFiles(p.certificate, None), "tls_private_key is not set"),
        (lambda p, t: TLSFiles(p.certificate, p.certificate), "cannot be used together"),
        (lambda p, t: TLSFiles(p.certificate, p.private_key, t / "junk.pem"), "no usable PEM"),
        (
            lambda p, t: TLSFiles(p.certificate, p.private_key, require_client_certificate=True),
            "tls_ca_certificates is not set",
        ),
    ],
    ids=["no-certificate", "no-key", "key-unset", "not-a-key", "junk-ca", "mutual-without-ca"],
)
def test_an_unusable_file_is_a_one_line_error_naming_the_setting(
    files, message: str, pairs: dict[str, SelfSigned], tmp_path: Path
):
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(TLSConfigurationError) as raised:
        server_context(files(pairs["node"], tmp_path))
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
