"""Cross-site request forgery: a page of another origin cannot make a logged-in browser
change anything; the dashboard's own forms and token-authenticated API clients can."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect
from web_support import SESSION_COOKIE, TOKEN, csrf_token_of

from dicomflow.queue.backend import open_backend
from dicomflow.queue.job import Job, JobStatus
from dicomflow.settings import build_settings

NOOP = "dicomflow.queue.function:check_function_name"
ELSEWHERE = "http://127.0.0.1:9"  # another origin on the same host: the same site
TIMEOUT_MS = 15_000


@pytest.fixture
def web(tmp_path: Path, web_for):  # type: ignore[no-untyped-def]
    return web_for(settings=build_settings(data_directory=tmp_path / "data"))


def queued_job(web) -> str:  # type: ignore[no-untyped-def]
    backend = open_backend(web.settings.resolved_queue_url())
    try:
        return backend.enqueue(Job(function=NOOP, name="victim")).id
    finally:
        backend.close()


def status_of(web, job_id: str) -> str:  # type: ignore[no-untyped-def]
    with web.client() as client:
        return str(client.get(f"/api/jobs/{job_id}").json()["status"])


@contextmanager
def logged_in(web) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """A client holding a session cookie (and no token), like a browser."""
    with web.client(authenticated=False) as client:
        assert client.post("/login", data={"password": TOKEN}).status_code == 303
        yield client


def test_a_cookie_authenticated_post_from_another_origin_is_refused(web) -> None:  # type: ignore[no-untyped-def]
    job = queued_job(web)
    with logged_in(web) as client:
        token = csrf_token_of(client.get("/jobs").text)
        for header in ({"Origin": ELSEWHERE}, {"Referer": f"{ELSEWHERE}/page"}):
            refused = client.post(f"/jobs/{job}/cancel", data={"csrf_token": token}, headers=header)
            assert refused.status_code == 403
            assert "Cross-origin request refused" in refused.json()["detail"]
        assert client.post(f"/jobs/{job}/cancel", headers={"Origin": web.url}).status_code == 403
        wrong = {"csrf_token": "guess"}
        assert client.post(f"/jobs/{job}/cancel", data=wrong).status_code == 403
        assert status_of(web, job) == JobStatus.QUEUED
        done = client.post(
            f"/jobs/{job}/cancel", data={"csrf_token": token}, headers={"Origin": web.url}
        )
        assert done.status_code == 303
    assert status_of(web, job) == JobStatus.CANCELED


def test_login_logout_and_stow_check_the_origin(web) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        foreign = {"Origin": ELSEWHERE}
        assert client.post("/login", data={"password": TOKEN}, headers=foreign).status_code == 403
    with logged_in(web) as client:
        assert client.post("/logout", headers=foreign).status_code == 403
        assert client.post("/logout").status_code == 403  # no CSRF token
        stow = client.post("/dicomweb/studies", content=b"", headers={"Content-Type": "x/y"})
        assert stow.status_code == 403  # a cookie-authenticated upload needs the token too
        assert client.get("/api/jobs").status_code == 200  # the session lives on
    with web.client() as api:  # a bearer token: no cookie, no CSRF token needed
        stow = api.post("/dicomweb/studies", content=b"", headers={"Content-Type": "x/y"})
        assert stow.status_code not in (401, 403)
        assert api.post("/jobs/abc/cancel").status_code == 404


class AttackerPage(BaseHTTPRequestHandler):
    """A page that posts a form to the dashboard as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="post" action="{self.target}">'
            '<input type="hidden" name="csrf_token" value="guess"></form>'
            "<script>document.getElementById('f').submit()</script>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[ThreadingHTTPServer]:
    """A second local origin (another port on 127.0.0.1) serving :class:`AttackerPage`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AttackerPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_page_of_another_origin_cannot_post_for_a_logged_in_browser(  # type: ignore[no-untyped-def]
    browser: Browser, web, attacker: ThreadingHTTPServer
):
    victim, mine = queued_job(web), queued_job(web)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{web.url}/jobs")
    page.fill('input[name="password"]', TOKEN)
    page.click("#login")
    expect(page.locator("h1")).to_have_text("Jobs")

    AttackerPage.target = f"{web.url}/jobs/{victim}/cancel"
    with page.expect_response(AttackerPage.target) as posted:
        page.goto(f"http://127.0.0.1:{attacker.server_address[1]}/")
    assert posted.value.status == 403
    assert status_of(web, victim) == JobStatus.QUEUED

    page.goto(f"{web.url}/jobs")
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator(f'tr[data-job-id="{mine}"] form.cancel button').click()
    expect(page.locator("#flash")).to_contain_text("is canceled")
    assert status_of(web, mine) == JobStatus.CANCELED

    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    page.locator("header .logout button").click()
    expect(page.locator("#login")).to_be_visible()
    with web.client(authenticated=False) as replay:
        replay.cookies.set(SESSION_COOKIE, cookie["value"])
        assert replay.get("/api/jobs").status_code == 401


@pytest.mark.parametrize("trusted", [False, True])
def test_behind_a_trusted_proxy_the_forwarded_origin_is_the_servers(  # type: ignore[no-untyped-def]
    tmp_path: Path, web_for, trusted: bool
):
    proxies = ["127.0.0.1"] if trusted else []
    settings = build_settings(data_directory=tmp_path / "data", web_trusted_proxies=proxies)
    web = web_for(settings=settings)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dicomflow.example"}
    with web.client(authenticated=False) as client:
        headers = {"Origin": "https://dicomflow.example", **forwarded}
        response = client.post("/login", data={"password": TOKEN}, headers=headers)
    assert response.status_code == (303 if trusted else 403)
    if trusted:  # the browser reached the proxy by https: the cookie is for https only
        assert "secure" in response.headers["set-cookie"].lower()


def test_a_bad_trusted_proxy_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="web_trusted_proxies"):
        build_settings(data_directory=tmp_path, web_trusted_proxies=["proxy.example"])
