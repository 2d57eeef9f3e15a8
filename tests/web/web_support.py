"""A dashboard served for a test node: its URL, token and an authenticated client."""

import re
from dataclasses import dataclass

import httpx

from dicomflow.engine.node import Node
from dicomflow.settings import NodeSettings
from dicomflow.web import WebContext, WebServer, create_app
from dicomflow.web.auth import Credentials

TOKEN = "test-token"
SESSION_COOKIE = "dicomflow_session"  # the cookie a browser holds after logging in


@dataclass
class WebNode:
    """A running dashboard (``url``) for ``node`` (or for ``settings`` alone)."""

    server: WebServer
    settings: NodeSettings
    node: Node | None
    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, authenticated: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if authenticated else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def serve_web(settings: NodeSettings, node: Node | None = None) -> WebNode:
    settings = settings.model_copy(update={"web_token": None})
    credentials = Credentials(TOKEN)
    server = WebServer(create_app(WebContext(settings, credentials, node)), "127.0.0.1", 0)
    server.start()
    return WebNode(server, settings, node)


def csrf_token_of(page: str) -> str:
    """The CSRF token a dashboard page gives its forms."""
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)
