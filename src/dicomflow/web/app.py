"""The FastAPI application: health, login, then the dashboard, DICOMweb and metrics,
all behind authentication."""

from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dicomflow.web import dashboard, dicomweb, metrics
from dicomflow.web.auth import SESSION_COOKIE, Throttle, require_auth
from dicomflow.web.context import WebContext

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def create_app(context: WebContext) -> FastAPI:
    """The application for ``context`` (``app.state.context``)."""
    app = FastAPI(title="dicomflow", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context
    app.state.templates = templates
    app.state.throttle = Throttle()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_api_route("/login", _login_form, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/login", _login, methods=["POST"])
    app.add_api_route("/logout", _logout, methods=["POST", "GET"])
    secured = [Depends(require_auth)]
    app.include_router(metrics.router, dependencies=secured)
    app.include_router(dicomweb.router, prefix="/dicomweb", dependencies=secured)
    app.include_router(dashboard.router, dependencies=secured)
    app.add_exception_handler(HTTPException, _unauthorized_page)
    return app


async def _unauthorized_page(request: Request, exc: Exception) -> Response:
    """A browser asking for a page without a session gets the login form (still 401)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": request.url.path, "error": None},
            status_code=401,
            headers=exc.headers,
        )
    return await http_exception_handler(request, exc)


def _health(request: Request) -> JSONResponse:
    context: WebContext = request.app.state.context
    node = context.node
    listening = node is not None and node.scp is not None
    return JSONResponse({"status": "ok", "dicom_listening": listening})


def _login_form(request: Request, next: str = "/") -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": _local(next), "error": None})


def _login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    context: WebContext = request.app.state.context
    credentials = context.credentials
    throttle: Throttle = request.app.state.throttle
    throttle.check(request)
    if not credentials.check_login(username, password):
        throttle.failed(request)
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _local(next), "error": "Wrong user name or password."},
            status_code=401,
        )
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE, credentials.session_value(), httponly=True, samesite="strict"
    )
    return response


def _logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _local(target: str) -> str:
    """Only same-site paths are followed after login (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
