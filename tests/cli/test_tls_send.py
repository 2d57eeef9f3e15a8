"""``dicomflow send --tls`` and ``dicomflow echo --tls`` against dcmtk's ``storescp +tls``:
``--tls-ca`` trusts the server, ``--tls-cert``/``--tls-key`` are the client certificate;
a bad file or a failed handshake is one ``error:`` line."""

from pathlib import Path

import pytest
from test_cli_errors import assert_one_line_error, dicomflow

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.tls import SelfSigned
from support import StoreSCPPeer
from support import sop_uids as uids


def test_send_with_tls_delivers_every_file(
    tmp_path: Path, tls_pacs: StoreSCPPeer, server_pair: SelfSigned
):
    files = write_series(make_ct_series(4), tmp_path / "series")
    result = dicomflow(
        "send", "127.0.0.1", tls_pacs.port, tmp_path / "series", "--aec", "PACS",
        "--tls", "--tls-ca", server_pair.certificate, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"sent 4 of 4 instance(s) to PACS@127.0.0.1:{tls_pacs.port} over TLS" in result.stdout
    assert uids(tls_pacs.files()) == uids(files)


def test_echo_with_tls(tmp_path: Path, tls_pacs: StoreSCPPeer, server_pair: SelfSigned):
    result = dicomflow(
        "echo", "127.0.0.1", tls_pacs.port, "--aec", "PACS",
        "--tls", "--tls-ca", server_pair.certificate, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"C-ECHO to PACS@127.0.0.1:{tls_pacs.port} over TLS: success\n"


def test_mutual_tls_with_a_client_certificate(
    tmp_path: Path, mutual_pacs: StoreSCPPeer, server_pair: SelfSigned, client_pair: SelfSigned
):
    files = write_series(make_ct_series(2), tmp_path / "series")
    trust = ("--tls", "--tls-ca", server_pair.certificate)
    without = dicomflow("send", "127.0.0.1", mutual_pacs.port, *files, *trust, cwd=tmp_path)
    assert_one_line_error(without, 1, f"Cannot associate with ANY-SCP@127.0.0.1:{mutual_pacs.port}")
    identity = ("--tls-cert", client_pair.certificate, "--tls-key", client_pair.private_key)
    result = dicomflow(
        "send", "127.0.0.1", mutual_pacs.port, *files, *trust, *identity, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert uids(mutual_pacs.files()) == uids(files)


def test_an_untrusted_server_is_one_error_line_naming_it(
    tmp_path: Path, tls_pacs: StoreSCPPeer, client_pair: SelfSigned
):
    files = write_series(make_ct_series(1), tmp_path / "series")
    result = dicomflow(
        "send", "127.0.0.1", tls_pacs.port, *files, "--aec", "PACS",
        "--tls", "--tls-ca", client_pair.certificate, cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, 1, f"PACS@127.0.0.1:{tls_pacs.port}: the TLS handshake failed")
    assert "not trusted" in result.stderr
    echoed = dicomflow("echo", "127.0.0.1", tls_pacs.port, "--tls", cwd=tmp_path)
    assert_one_line_error(echoed, 1, "the TLS handshake failed (the peer's certificate is not")


def test_tls_to_a_plain_peer_is_one_error_line(tmp_path: Path, storescp: StoreSCPPeer):
    result = dicomflow("echo", "127.0.0.1", storescp.port, "--tls", cwd=tmp_path)
    assert_one_line_error(result, 1, "the TLS handshake failed")


@pytest.mark.parametrize(
    ("option", "content", "text"),
    [
        ("--tls-ca", None, 'tls_ca_certificates "{path}" cannot be read'),
        ("--tls-ca", "not a certificate", 'tls_ca_certificates "{path}" holds no usable PEM'),
        ("--tls-cert", None, "tls_certificate is set but tls_private_key is not"),
    ],
)
def test_a_bad_tls_file_is_one_error_line(
    tmp_path: Path, tls_pacs: StoreSCPPeer, option: str, content: str | None, text: str
):
    path = tmp_path / "given.pem"
    if content is not None:
        path.write_text(content)
    result = dicomflow("echo", "127.0.0.1", tls_pacs.port, option, path, cwd=tmp_path)
    assert_one_line_error(result, 1, text.format(path=path))


def test_a_key_that_does_not_match_is_one_error_line(
    tmp_path: Path, tls_pacs: StoreSCPPeer, server_pair: SelfSigned, client_pair: SelfSigned
):
    result = dicomflow(
        "echo", "127.0.0.1", tls_pacs.port, "--tls", "--tls-ca", server_pair.certificate,
        "--tls-cert", client_pair.certificate, "--tls-key", server_pair.private_key,
        cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, 1, "cannot be used together")
