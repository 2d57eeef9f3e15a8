"""The login form, logging in (a new random session per login) and logging out (the
session ends on the server, so its cookie is worthless afterwards)."""

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dicomflow.web.auth import guard_of
from dicomflow.web.csrf import check_origin, check_token, own_origin
from dicomflow.web.sessions import SESSION_COOKIE

logger = logging.getLogger(__name__)

router = APIRouter()


def login_page(
    request: Request, next: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """The login form, returning to ``next`` (a local path) afterwards."""
    response: HTMLResponse = request.app.state.templates.TemplateResponse(
        request,
        "login.html",
        {"next": local(next), "error": error},
        status_code=status_code,
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return login_page(request, next)


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Start a session for valid credentials (the token, or user and password)."""
    guard = guard_of(request)
    check_origin(request, guard.proxies)
    if not guard.password_login(request, username, password):
        error = "Wrong user name or password."
        return login_page(request, next, error, status.HTTP_401_UNAUTHORIZED)
    identifier, _ = guard.sessions.start()
    logger.info("dashboard login from %s", guard.proxies.client(request))
    response = RedirectResponse(local(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        identifier,
        max_age=math.ceil(guard.sessions.lifetime_s),
        httponly=True,
        samesite="strict",
        secure=own_origin(request, guard.proxies).startswith("https:"),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session of the cookie (which must come with its CSRF token)."""
    guard = guard_of(request)
    check_origin(request, guard.proxies)
    identifier = request.cookies.get(SESSION_COOKIE)
    session = guard.sessions.find(identifier)
    if session is not None:
        await check_token(request, session)
        guard.sessions.end(identifier)
        logger.info("a dashboard session ended by logout")
    response = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE)
    return response


def local(target: str) -> str:
    """Only same-site paths are followed after login (no open redirect)."""
    remote = target.startswith(("//", "/\\")) or not target.startswith("/")
    return "/" if remote else target
