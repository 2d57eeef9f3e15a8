"""Fixtures for the web tests: ``web_for`` serves a dashboard for a node or settings;
``browser`` is Debian's headless Chromium driven by Playwright."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from web_support import WebNode, serve_web

from dicomflow.engine.node import Node
from dicomflow.settings import NodeSettings

WebFactory = Callable[..., WebNode]


@pytest.fixture
def web_for() -> Iterator[WebFactory]:
    """``web_for(node)`` or ``web_for(settings=...)``: a dashboard, stopped afterwards."""
    started: list[WebNode] = []

    def factory(node: Node | None = None, settings: NodeSettings | None = None) -> WebNode:
        chosen = settings if settings is not None else node.settings if node else None
        assert chosen is not None, "give a node or settings"
        web = serve_web(chosen, node)
        started.append(web)
        return web

    yield factory
    for web in started:
        web.server.stop()


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}; run `make test`, which installs it.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
