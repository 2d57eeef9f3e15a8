"""Authentication: everything but /health and the login form needs credentials."""

import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from web_support import SESSION_COOKIE, TOKEN, csrf_token_of

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


def test_repeated_failed_logins_are_throttled_but_never_the_token(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        for _ in range(50):  # a flood of guesses from one address
            client.post("/login", data={"password": "guess"})
        refused = client.post("/login", data={"password": "guess"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert client.get("/api/jobs", auth=("any", "guess")).status_code == 429
        assert client.get("/api/jobs", auth=("any", TOKEN)).status_code == 200
        bearer = client.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        assert client.post("/login", data={"password": TOKEN}).status_code == 303
        assert client.get("/api/jobs").status_code == 200  # the new session
        assert client.get("/health").status_code == 200


def password_web(tmp_path: Path, web_for, **settings):  # type: ignore[no-untyped-def]
    """A dashboard with a user and password (and ``settings``)."""
    web = web_for(settings=build_settings(data_directory=tmp_path, **settings))
    web.server.app.state.context.credentials = Credentials(TOKEN, "physicist", "s3cret")
    return web


def login(client: httpx.Client, password: str, forwarded_for: str) -> int:
    data = {"username": "physicist", "password": password}
    headers = {"X-Forwarded-For": forwarded_for}
    return client.post("/login", data=data, headers=headers).status_code


def test_the_throttle_ignores_forwarded_addresses_from_untrusted_peers(  # type: ignore[no-untyped-def]
    tmp_path: Path, web_for
) -> None:
    web = password_web(tmp_path, web_for)
    with web.client(authenticated=False) as client:
        for index in range(10):
            assert login(client, "guess", f"198.51.100.{index}") == 401
        assert login(client, "guess", "198.51.100.99") == 429
        assert login(client, "s3cret", "198.51.100.98") == 429  # this address is throttled
    with web.client() as client:
        assert client.get("/api/jobs").status_code == 200  # the token is not


def test_behind_a_trusted_proxy_each_client_is_throttled_alone(  # type: ignore[no-untyped-def]
    tmp_path: Path, web_for
) -> None:
    web = password_web(tmp_path, web_for, web_trusted_proxies=["127.0.0.0/8"])
    with web.client(authenticated=False) as client:
        for _ in range(10):
            assert login(client, "guess", "203.0.113.7") == 401
        assert login(client, "s3cret", "203.0.113.7") == 429
        assert login(client, "s3cret", "203.0.113.8, 203.0.113.7") == 429  # spoofed hop
        assert login(client, "s3cret", "203.0.113.8") == 303


def session_cookie(web) -> str:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        assert client.post("/login", data={"password": TOKEN}).status_code == 303
        return str(client.cookies[SESSION_COOKIE])


def test_each_login_has_its_own_session_and_logout_ends_it(web) -> None:  # type: ignore[no-untyped-def]
    first, second = session_cookie(web), session_cookie(web)
    assert first != second and TOKEN not in first
    with web.client(authenticated=False) as browser:
        browser.cookies.set(SESSION_COOKIE, first)
        token = csrf_token_of(browser.get("/").text)
        assert browser.post("/logout", data={"csrf_token": token}).status_code == 303
    with web.client(authenticated=False) as replay:
        replay.cookies.set(SESSION_COOKIE, first)
        assert replay.get("/api/jobs").status_code == 401  # captured before logout
        replay.cookies.set(SESSION_COOKIE, second)
        assert replay.get("/api/jobs").status_code == 200  # another login lives on


def test_a_session_expires(tmp_path: Path, web_for) -> None:  # type: ignore[no-untyped-def]
    web = web_for(settings=build_settings(data_directory=tmp_path, web_session_hours=0.0002))
    cookie = session_cookie(web)
    with web.client(authenticated=False) as client:
        client.cookies.set(SESSION_COOKIE, cookie)
        assert client.get("/api/jobs").status_code == 200
        time.sleep(0.8)
        assert client.get("/api/jobs").status_code == 401


def test_missing_or_stale_tokens_and_cookies_do_not_count_as_failures(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        for _ in range(20):
            assert client.get("/api/jobs").status_code == 401
            stale = {"Authorization": "Bearer old-token", "Cookie": "dicomflow_session=old"}
            assert client.get("/api/jobs", headers=stale).status_code == 401
        assert client.post("/login", data={"password": TOKEN}).status_code in (200, 303)
    with web.client() as client:
        assert client.get("/api/jobs").status_code == 200
