"""Run the web application with uvicorn in a background thread."""

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from dicomflow.errors import DicomflowError

if TYPE_CHECKING:
    from dicomflow.node.node import Node
    from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


class WebServer:
    """``app`` served on ``ip:port`` (0 for any free port) until :meth:`stop`."""

    def __init__(self, app: FastAPI, ip: str = "127.0.0.1", port: int = 8080) -> None:
        config = uvicorn.Config(
            app, host=ip, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self.app = app
        self._server = uvicorn.Server(config)
        self.ip = ip
        self._thread = threading.Thread(target=self._run, name="dicomflow-web", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> None:
        """Start serving; return once the socket listens.

        Raises:
            DicomflowError: if the server cannot listen (port in use, bad address).
        """
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                reason = self._error or "it did not start"
                raise DicomflowError(f"Dashboard cannot listen on {self.ip}: {reason}")
            time.sleep(0.02)
        logger.info("dashboard on %s", self.url)

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self._server.config.port)

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_web(settings: "NodeSettings", node: "Node | None") -> WebServer | None:
    """Serve the dashboard for ``node`` as ``settings`` say (unless ``web_enabled`` is off).

    Raises:
        DicomflowError: if the credentials are incomplete or the server cannot listen.
    """
    from dicomflow.web.app import create_app
    from dicomflow.web.auth import Credentials
    from dicomflow.web.context import WebContext

    if not settings.web_enabled:
        return None
    try:
        credentials = Credentials.from_settings(settings)
    except ValueError as exc:
        raise DicomflowError(f"Dashboard settings: {exc}.") from None
    server = WebServer(
        create_app(WebContext(settings, credentials, node)), settings.web_ip, settings.web_port
    )
    server.start()
    return server
