"""Authentication: everything but /health and the login form needs credentials."""

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from web_support import TOKEN

from dicomflow.settings import build_settings
from dicomflow.web.auth import TOKEN_FILE, Credentials

PROTECTED = ["/", "/metrics", "/dicomweb/studies"]


@pytest.fixture
def web(tmp_path: Path, web_for):  # type: ignore[no-untyped-def]
    return web_for(settings=build_settings(data_directory=tmp_path / "data"))


def test_health_needs_no_credentials(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("path", PROTECTED)
def test_unauthenticated_requests_get_401(web, path: str) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        assert client.get(path).status_code == 401
        wrong = client.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


def test_a_browser_gets_the_login_form_then_a_session(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        page = client.get("/", headers={"accept": "text/html"})
        assert page.status_code == 401
        assert 'action="/login"' in page.text
        refused = client.post("/login", data={"username": "x", "password": "bad"})
        assert refused.status_code == 401
        client.post("/login", data={"username": "x", "password": TOKEN, "next": "//evil"})
        assert client.get("/").status_code == 200


def test_user_and_password_by_basic_auth_and_login(tmp_path: Path, web_for) -> None:  # type: ignore[no-untyped-def]
    settings = build_settings(
        data_directory=tmp_path, web_user="physicist", web_password=SecretStr("s3cret")
    )
    credentials = Credentials.from_settings(settings)
    assert credentials.check_login("physicist", "s3cret")
    assert not credentials.check_login("physicist", credentials.token)
    web = web_for(settings=settings)
    web.server.app.state.context.credentials = credentials
    with httpx.Client(base_url=web.url) as client:
        assert client.get("/", auth=("physicist", "s3cret")).status_code == 200
        assert client.get("/", auth=("physicist", "wrong")).status_code == 401


def test_a_generated_token_is_kept_private_and_stable(tmp_path: Path) -> None:
    settings = build_settings(data_directory=tmp_path)
    first = Credentials.from_settings(settings).token
    assert (tmp_path / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    assert Credentials.from_settings(settings).token == first


def test_user_without_password_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="web_password"):
        Credentials.from_settings(build_settings(data_directory=tmp_path, web_user="alone"))


def test_repeated_failed_logins_are_throttled(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        for _ in range(10):
            assert client.post("/login", data={"password": "guess"}).status_code == 401
        refused = client.post("/login", data={"password": TOKEN})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        basic = client.get("/api/jobs", auth=("any", TOKEN))
        assert basic.status_code == 429  # password logins from that address wait
        bearer = client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200  # the token is never throttled
        assert client.get("/health").status_code == 200


def test_missing_or_stale_tokens_and_cookies_do_not_count_as_failures(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        for _ in range(20):
            assert client.get("/api/jobs").status_code == 401
            stale = {"Authorization": "Bearer old-token", "Cookie": "dicomflow_session=old"}
            assert client.get("/api/jobs", headers=stale).status_code == 401
        assert client.post("/login", data={"password": TOKEN}).status_code in (200, 303)
    with web.client() as client:
        assert client.get("/api/jobs").status_code == 200
