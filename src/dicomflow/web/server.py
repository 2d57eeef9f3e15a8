"""Run the web application with uvicorn in a background thread, over HTTPS when the
node has a certificate (``web_tls``).

HTTPS uses the node's own context (:func:`dicomflow.tls.server_context`: TLS 1.2 or
newer, the BCP 195 cipher suites), handed to uvicorn by :class:`_Config`. Browsers are
never asked for a client certificate, even when the DICOM port requires one.
"""

import asyncio
import dataclasses
import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from dicomflow import audit, tls
from dicomflow.errors import DicomflowError

if TYPE_CHECKING:
    from dicomflow.engine.node import Node
    from dicomflow.settings import NodeSettings

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0


class _Config(uvicorn.Config):
    """uvicorn's configuration, serving with a TLS context made by :mod:`dicomflow.tls`
    (uvicorn would make its own from file names, without the minimum version)."""

    def __init__(self, app: FastAPI, context: ssl.SSLContext | None, **options: Any) -> None:
        super().__init__(app, **options)
        self.tls_context = context

    def load(self) -> None:
        super().load()
        if self.tls_context is not None:
            self.ssl = self.tls_context


class WebServer:
    """``app`` served on ``ip:port`` (0 for any free port) until :meth:`stop`; over
    HTTPS with the ``tls`` context, if given."""

    def __init__(
        self,
        app: FastAPI,
        ip: str = "127.0.0.1",
        port: int = 8080,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        config = _Config(
            app,
            tls,
            host=ip,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,  # X-Forwarded-* only from web_trusted_proxies (web/proxies.py)
        )
        self.app = app
        self.https = tls is not None
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
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

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
    context = https_context(settings)
    audit.configure(
        settings.audit_log_file(), settings.audit_log_max_bytes, settings.audit_log_backups
    )
    app = create_app(WebContext(settings, credentials, node))
    server = WebServer(app, settings.web_ip, settings.web_port, context)
    server.start()
    return server


def https_context(settings: "NodeSettings") -> ssl.SSLContext | None:
    """The context the dashboard serves HTTPS with; None for plain HTTP.

    The node's certificate and key; no client certificate is asked for (browsers).

    Raises:
        DicomflowError: ``web_tls`` is on without a certificate, or a file cannot be used.
    """
    if not settings.web_https:
        return None
    if settings.tls_certificate is None:
        raise DicomflowError(
            "Dashboard settings: web_tls is on but tls_certificate is not set; give"
            " tls_certificate and tls_private_key, or turn web_tls off."
        )
    files = dataclasses.replace(settings.tls_files(), require_client_certificate=False)
    return tls.server_context(files)
