"""The dashboard and DICOMweb over HTTPS with the node's certificate: dicomweb-client and
httpx trusting the self-signed certificate, TLS 1.2+ with the BCP 195 suites only, no
client certificate asked of browsers, the session cookie ``Secure``, plain HTTP to the
HTTPS port refused without harm, Chromium, and ``dicomflow dashboard``."""

import json
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_support import part10
from playwright.sync_api import Browser, expect

from dicomflow import audit
from dicomflow.dicom.factory import make_ct_series
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.errors import DicomflowError
from dicomflow.settings import NodeSettings, build_settings
from dicomflow.tls import BCP195_CIPHERS, SelfSigned, make_self_signed
from dicomflow.web.server import WebServer, start_web
from support import wait_for

TOKEN = "https-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")


@dataclass
class HttpsNode:
    node: Node
    server: WebServer
    certificate: Path

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=trusting(self.certificate), timeout=30)

    def dicomweb(self) -> DICOMwebClient:
        session = requests.Session()
        session.verify = str(self.certificate)
        session.trust_env = False  # else REQUESTS_CA_BUNDLE, if set, replaces verify
        return DICOMwebClient(f"{self.url}/dicomweb", session=session, headers=AUTH)

    def audit_records(self, **matching: Any) -> list[dict[str, Any]]:
        lines = self.node.settings.audit_log_file().read_text().splitlines()
        found = [json.loads(line) for line in lines]
        return [r for r in found if all(r.get(k) == v for k, v in matching.items())]


def trusting(certificate: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificate))


def tls_settings(folder: Path, pair: SelfSigned, **values: Any) -> NodeSettings:
    values = {
        "port": 0,
        "data_directory": folder / "data",
        "web_port": 0,
        "web_token": TOKEN,
        "tls_certificate": pair.certificate,
        "tls_private_key": pair.private_key,
        **values,
    }
    return build_settings(**values)


@pytest.fixture(scope="module")
def https_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsNode]:
    folder = tmp_path_factory.mktemp("https")
    pair = make_self_signed(folder / "tls")
    datastore = str(folder / "archive")
    settings = tls_settings(
        folder, pair, archive_datastore=datastore, series_quiet_period_s=0.2, queue_workers=1
    )
    scheduler = ArchiveScheduler(datastore, settings.resolved_queue_url())
    node = Node(None, settings, Consumers(scheduler))
    node.start()
    server = start_web(settings, node)
    assert server is not None
    try:
        yield HttpsNode(node, server, pair.certificate)
    finally:
        server.stop()
        node.stop()


@pytest.fixture(scope="module")
def stored(https_node: HttpsNode) -> list[Any]:
    """Two instances of a patient with distinctive values, stored by STOW-RS over HTTPS."""
    datasets = [part10(ds) for ds in make_ct_series(2, rows=16, columns=16, patient_id="SECRET123")]
    response = https_node.dicomweb().store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 2
    return datasets


def test_dicomweb_client_stores_searches_and_retrieves_over_https(
    https_node: HttpsNode, stored: list[Any]
):
    assert https_node.url.startswith("https://127.0.0.1:")
    client = https_node.dicomweb()
    uids = {str(ds.SOPInstanceUID) for ds in stored}
    wait_for(
        lambda: len(client.search_for_instances(search_filters={"PatientID": "SECRET123"})) == 2,
        30,
        "the archived instances",
    )
    first = stored[0]
    retrieved = client.retrieve_instance(
        str(first.StudyInstanceUID), str(first.SeriesInstanceUID), str(first.SOPInstanceUID)
    )
    assert str(retrieved.SOPInstanceUID) in uids
    assert retrieved.PixelData == first.PixelData


def test_https_speaks_tls_1_2_or_newer_with_the_bcp195_suites(https_node: HttpsNode):
    with https_node.client() as client:
        response = client.get("/health")
        assert response.status_code == 200
        version = response.extensions["network_stream"].get_extra_info("ssl_object").version()
        assert version in ("TLSv1.2", "TLSv1.3")
    port = https_node.server.port
    for allowed in BCP195_CIPHERS.split(":")[:2]:
        assert _tls12_cipher(port, "ECDHE-ECDSA-AES128-GCM-SHA256:" + allowed) is not None
    assert _tls12_cipher(port, "ECDHE-ECDSA-AES128-SHA:AES128-SHA:AES256-SHA256") is None
    old = _context(ssl.TLSVersion.TLSv1_1)
    with pytest.raises((ssl.SSLError, OSError)):
        _handshake(port, old)


def _context(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw) as wrapped,
    ):
        cipher = wrapped.cipher()
        assert cipher is not None
        return cipher[0]


def _tls12_cipher(port: int, ciphers: str) -> str | None:
    """The TLS 1.2 suite the server picks among ``ciphers``, None if the handshake fails."""
    context = _context(ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(ciphers)
    try:
        chosen = _handshake(port, context)
    except (ssl.SSLError, ConnectionError):
        return None
    assert chosen in BCP195_CIPHERS.split(":")
    return chosen


def test_plain_http_to_the_https_port_fails_cleanly(
    https_node: HttpsNode, caplog: pytest.LogCaptureFixture
):
    plain = https_node.url.replace("https://", "http://")
    for _ in range(3):
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/health", timeout=10)
    with socket.create_connection(("127.0.0.1", https_node.server.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05garbage" * 100)
        raw.recv(1024)
    with https_node.client() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/api/overview", headers=AUTH).status_code == 200
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_the_session_cookie_is_secure_over_https(https_node: HttpsNode):
    with https_node.client() as client:
        response = client.post(
            "/login",
            data={"username": "", "password": TOKEN, "next": "/"},
            headers={"Origin": https_node.url},
        )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("dicomflow_session=")
    assert "secure" in cookie.lower() and "httponly" in cookie.lower()


def test_the_session_cookie_is_not_secure_over_plain_http(tmp_path: Path):
    settings = build_settings(data_directory=tmp_path / "data", web_port=0, web_token=TOKEN)
    server = start_web(settings, None)
    assert server is not None and server.url.startswith("http://")
    try:
        response = httpx.post(
            f"{server.url}/login",
            data={"username": "", "password": TOKEN, "next": "/"},
            headers={"Origin": server.url},
        )
    finally:
        server.stop()
    assert response.status_code == 303
    assert "secure" not in response.headers["set-cookie"].lower()


def test_web_requests_are_audited_without_query_strings(https_node: HttpsNode, stored: list[Any]):
    settings = https_node.node.settings
    audit.configure(
        settings.audit_log_file(), settings.audit_log_max_bytes, settings.audit_log_backups
    )
    with https_node.client() as client:
        found = client.get("/dicomweb/studies?PatientID=SECRET123&PatientName=Doe*", headers=AUTH)
        assert found.status_code == 200
        assert client.get("/dicomweb/studies", headers={"Authorization": "Bearer wrong"}).is_error
        client.get("/static/dashboard.css")
        client.get("/health")
        client.get("/metrics", headers=AUTH)

    def queries() -> list[dict[str, Any]]:
        return https_node.audit_records(type="http", path="/dicomweb/studies", method="GET")

    wait_for(lambda: len(queries()) == 2, 10, "the two QIDO records")
    answered, refused = queries()
    assert (answered["status"], answered["user"], answered["tls"]) == (200, "token", True)
    assert answered["client_ip"] == "127.0.0.1" and answered["duration_ms"] >= 0
    assert (refused["status"], refused["user"]) == (401, "")
    (upload,) = https_node.audit_records(type="http", method="POST", path="/dicomweb/studies")
    assert (upload["stored"], upload["status"], upload["user"]) == (2, 200, "token")
    paths = {r["path"] for r in https_node.audit_records(type="http")}
    assert not {"/health", "/metrics", "/static/dashboard.css"} & paths
    assert b"SECRET123" not in settings.audit_log_file().read_bytes()


def test_no_client_certificate_is_asked_of_browsers(tmp_path: Path):
    pair = make_self_signed(tmp_path / "tls")
    settings = tls_settings(
        tmp_path,
        pair,
        tls_ca_certificates=pair.certificate,
        tls_require_client_certificate=True,
    )
    server = start_web(settings, None)
    assert server is not None
    try:
        response = httpx.get(f"{server.url}/health", verify=trusting(pair.certificate))
    finally:
        server.stop()
    assert response.status_code == 200


def test_web_tls_chooses_https_or_http(tmp_path: Path):
    pair = make_self_signed(tmp_path / "tls")
    plain = start_web(tls_settings(tmp_path, pair, web_tls=False), None)
    assert plain is not None
    try:
        assert plain.url.startswith("http://")
        assert httpx.get(f"{plain.url}/health").status_code == 200
    finally:
        plain.stop()
    no_certificate = build_settings(data_directory=tmp_path / "d2", web_port=0, web_tls=True)
    with pytest.raises(DicomflowError, match="web_tls is on but tls_certificate is not set"):
        start_web(no_certificate, None)


def test_a_key_that_does_not_match_is_a_one_line_error(tmp_path: Path):
    pair = make_self_signed(tmp_path / "one")
    other = make_self_signed(tmp_path / "other")
    settings = tls_settings(tmp_path, pair, tls_private_key=other.private_key)
    with pytest.raises(DicomflowError) as raised:
        start_web(settings, None)
    message = str(raised.value)
    assert "\n" not in message and "cannot be used together" in message


def test_chromium_logs_in_over_https(https_node: HttpsNode, browser: Browser):
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(f"{https_node.url}/")
    page.fill('input[name="password"]', TOKEN)
    page.click("#login")
    expect(page.locator("h1")).to_be_visible()
    assert page.url.startswith("https://")
    (cookie,) = context.cookies()
    assert cookie["name"] == "dicomflow_session" and cookie["secure"] is True
    context.close()


def test_dicomflow_dashboard_serves_https(tmp_path: Path):
    pair = make_self_signed(tmp_path / "tls")
    command = [DICOMFLOW, "dashboard", "--data-dir", str(tmp_path / "data"), "--web-port", "0"]
    command += ["--tls-cert", str(pair.certificate), "--tls-key"]
    log = tmp_path / "dashboard.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, str(pair.private_key)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for(lambda: "dashboard: " in log.read_text(), 30, "the dashboard to start")
        url = re.findall(r"dashboard: (https://127\.0\.0\.1:\d+)", log.read_text())[0]
        assert httpx.get(f"{url}/health", verify=trusting(pair.certificate)).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=15)
    assert process.returncode == 0, log.read_text()


def test_dicomflow_dashboard_web_tls_without_certificate_is_one_line(tmp_path: Path):
    result = subprocess.run(
        [DICOMFLOW, "dashboard", "--data-dir", str(tmp_path / "d"), "--web-tls", "--web-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "web_tls is on" in errors[0], result.stderr
