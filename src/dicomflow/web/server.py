"""Run the web application with uvicorn in a background thread."""

import asyncio
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from dicomflow.errors import DicomflowError

if TYPE_CHECKING:
    from dicomflow.engine.node import Node
    from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


class WebServer:
    """``app`` served on ``ip:port`` (0 for any free port) until :meth:`stop`."""

    def __init__(self, app: FastAPI, ip: str = "127.0.0.1", port: int = 8080) -> None:
        config = uvicorn.Config(
            app,
            host=ip,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-* only from web_trusted_proxies (web/proxies.py)
        )
        self.app = app
        self._server = uvicorn.Server(config)
        self.ip = ip
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name="dicomflow-web", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket] if self._socket else None))
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> None:
        """Start serving; return once the socket listens.

        Raises:
            DicomflowError: if the server cannot listen (port in use, bad address), naming
                the address and the settings that choose it.
        """
        self._socket = self._bind()
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                reason = self._error or "it did not start"
                raise DicomflowError(f"Dashboard cannot listen on {self.ip}: {reason}")
            time.sleep(0.02)
        logger.info("dashboard on %s", self.url)

    def _bind(self) -> socket.socket:
        """The listening socket, bound here so that a port in use is a clear error.

        It is created with ``IPPROTO_TCP`` named: asyncio sets ``TCP_NODELAY`` on the
        connections it accepts only then, and without it every response on a kept-alive
        connection waits for the client's delayed ACK (about 40 ms).
        """
        try:
            family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.ip, self._requested_port))
            sock.listen(128)
        except OSError as exc:
            raise DicomflowError(
                f"Dashboard cannot listen on {self.ip}:{self._requested_port}: {exc.strerror}"
                " (choose another with --web-port / web_port, or turn it off with --no-web)."
            ) from None
        return sock

    @property
    def port(self) -> int:
        if self._socket is not None:
            return int(self._socket.getsockname()[1])
        return self._requested_port

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()


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
