"""Fixtures for the web tests: ``web_for`` serves a dashboard for a node or settings."""

from collections.abc import Callable, Iterator

import pytest
from web_support import WebNode, serve_web

from dicomflow.node.node import Node
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
