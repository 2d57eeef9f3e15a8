"""``dicomflow serve`` with a certificate: the dashboard it prints is HTTPS (plain HTTP
with ``--no-web-tls``), and its requests land in the node's audit log."""

import json
import re
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from test_cli import COPY_PIPELINE, DICOMFLOW, clean_env, stops_cleanly

from dicomflow.tls import make_self_signed
from support import wait_for

TOKEN = "cli-https-token"


@pytest.mark.parametrize("web_tls", [None, False], ids=["default", "no-web-tls"])
def test_serve_prints_and_serves_the_dashboard_over_https(tmp_path: Path, web_tls: bool | None):
    pair = make_self_signed(tmp_path / "tls")
    env = {
        **clean_env(),
        "DICOMFLOW_TLS_CERTIFICATE": str(pair.certificate),
        "DICOMFLOW_TLS_PRIVATE_KEY": str(pair.private_key),
        "DICOMFLOW_WEB_TOKEN": TOKEN,
    }
    command = [DICOMFLOW, "serve", str(COPY_PIPELINE), "--port", "0", "--data-dir", "data"]
    command += ["--no-web-tls"] if web_tls is False else []
    log = tmp_path / "node.log"
    with log.open("wb") as output:
        node = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=tmp_path, env=env
        )
    try:
        wait_for(lambda: "dashboard: " in log.read_text(), 30, "the dashboard")
        url = re.findall(r"dashboard: (https?://127\.0\.0\.1:\d+)", log.read_text())[0]
        assert url.startswith("http://" if web_tls is False else "https://")
        verify = ssl.create_default_context(cafile=str(pair.certificate))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        response = httpx.get(f"{url}/api/overview?PatientID=X", headers=headers, verify=verify)
        assert response.status_code == 200
    finally:
        node.send_signal(signal.SIGINT)
    stops_cleanly(node, log)
    lines = (tmp_path / "data" / "audit" / "audit.jsonl").read_text().splitlines()
    (record,) = [r for r in map(json.loads, lines) if r["type"] == "http"]
    assert (record["path"], record["user"], record["status"]) == ("/api/overview", "token", 200)
    assert record["tls"] is (web_tls is not False)
