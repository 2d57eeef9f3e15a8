"""The FastAPI application: health, login, then the dashboard, DICOMweb and metrics,
all behind authentication, every response with the security headers."""

from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dicomflow.web import login, prometheus
from dicomflow.web.access_audit import AccessAudit
from dicomflow.web.auth import Guard, require_auth
from dicomflow.web.context import WebContext
from dicomflow.web.dicomweb import routes as dicomweb
from dicomflow.web.pages import dashboard
from dicomflow.web.security_headers import SecurityHeaders, server_error

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def create_app(context: WebContext) -> FastAPI:
    """The application for ``context`` (``app.state.context``)."""
    app = FastAPI(title="dicomflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context
    app.state.templates = templates
    app.state.guard = Guard.from_settings(context.settings)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_api_route("/health", _health, methods=["GET"])
    app.include_router(login.router)
    secured = [Depends(require_auth)]
    app.include_router(prometheus.router, dependencies=secured)
    app.include_router(dicomweb.router, prefix="/dicomweb", dependencies=secured)
    app.include_router(dashboard.router, dependencies=secured)
    app.add_exception_handler(HTTPException, _unauthorized_page)
    app.add_exception_handler(Exception, server_error)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessAudit)
    return app


async def _unauthorized_page(request: Request, exc: Exception) -> Response:
    """A browser asking for a page without a session gets the login form (still 401)."""
    if not isinstance(exc, HTTPException):
        raise exc
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        response = login.login_page(request, request.url.path, status_code=401)
        response.headers.update(exc.headers or {})
        return response
    return await http_exception_handler(request, exc)


def _health(request: Request) -> JSONResponse:
    context: WebContext = request.app.state.context
    node = context.node
    listening = node is not None and node.scp is not None
    return JSONResponse({"status": "ok", "dicom_listening": listening})
