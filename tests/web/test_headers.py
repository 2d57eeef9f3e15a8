"""Security headers on every response: pages, API, DICOMweb, static files and errors."""

from pathlib import Path

import pytest

from dicomflow.settings import build_settings

SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
# (path, authenticated, status): a page, the API, DICOMweb, metrics, static, errors
RESPONSES = [
    ("/", True, 200),
    ("/jobs", True, 200),
    ("/api/overview", True, 200),
    ("/dicomweb/studies", True, 200),
    ("/metrics", True, 200),
    ("/health", False, 200),
    ("/login", False, 200),
    ("/static/dashboard.js", False, 200),
    ("/", False, 401),
    ("/jobs/abc", True, 404),
    ("/no/such/page", True, 404),
    ("/jobs?status=exploded", True, 400),
    ("/fails", False, 500),
]


def fails() -> None:
    raise RuntimeError("an unexpected error")


@pytest.fixture
def web(tmp_path: Path, web_for):  # type: ignore[no-untyped-def]
    web = web_for(settings=build_settings(data_directory=tmp_path / "data"))
    web.server.app.add_api_route("/fails", fails)  # stands for any bug
    return web


@pytest.mark.parametrize(("path", "authenticated", "status"), RESPONSES)
def test_every_response_carries_the_security_headers(  # type: ignore[no-untyped-def]
    web, path: str, authenticated: bool, status: int
):
    with web.client(authenticated) as client:
        response = client.get(path)
    assert response.status_code == status
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, name
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    cache = response.headers.get("cache-control", "")
    assert path.startswith("/static/") or cache == "no-store"
