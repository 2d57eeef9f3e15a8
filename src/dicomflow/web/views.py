"""What every dashboard page shares: rendering with the flash message, action answers
(a redirect with a flash message for a form, JSON for ``fetch``), parameter checks and
the formatting of times."""

import json
import time
from typing import Any
from urllib.parse import quote, unquote

from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dicomflow.dicom.keys import is_valid_uid
from dicomflow.queue.job import JOB_ID
from dicomflow.web.context import WebContext
from dicomflow.web.sessions import Session

FLASH_COOKIE = "dicomflow_flash"
MAX_FLASH = 300


def context_of(request: Request) -> WebContext:
    web: WebContext = request.app.state.context
    return web


def shows_identifiers(request: Request) -> bool:
    """Whether patient names, IDs and birth dates may be shown (``show_patient_identifiers``)."""
    return context_of(request).settings.show_patient_identifiers


def render(
    request: Request, template: str, values: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render ``template`` with ``values``, the pending flash message and the privacy
    setting (``show_identifiers``); the flash message is shown once."""
    templates = request.app.state.templates
    _install_filters(templates.env)
    flash = _read_flash(request)
    page = {
        "flash": flash,
        "show_identifiers": shows_identifiers(request),
        "csrf_token": csrf_token(request),
    }
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {**page, **values}, status_code=status_code
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE)
    return response


def csrf_token(request: Request) -> str:
    """The CSRF token the page's forms carry: its session's (empty without a session)."""
    session: Session | None = getattr(request.state, "session", None)
    return session.csrf_token if session is not None else ""


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def answer(request: Request, back: str, message: str, *, ok: bool = True, **data: Any) -> Response:
    """The answer to an action: JSON (``ok``, ``message`` and ``data``; 409 when not ``ok``)
    for a script, otherwise a redirect to ``back`` showing ``message`` once."""
    if wants_json(request):
        code = status.HTTP_200_OK if ok else status.HTTP_409_CONFLICT
        return JSONResponse({"ok": ok, "message": message, **data}, status_code=code)
    response = RedirectResponse(back, status_code=status.HTTP_303_SEE_OTHER)
    flash = json.dumps({"ok": ok, "message": message[:MAX_FLASH]})
    response.set_cookie(FLASH_COOKIE, quote(flash), httponly=True, samesite="strict")
    return response


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        flash = json.loads(unquote(raw))
        return {"ok": bool(flash["ok"]), "message": str(flash["message"])[:MAX_FLASH]}
    except (ValueError, KeyError, TypeError):
        return None


def bad_request(message: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, message)


def not_found(message: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, message)


def check_uid(value: str, name: str) -> str:
    """``value`` if it is a DICOM UID; otherwise a 400."""
    if not is_valid_uid(value):
        raise bad_request(f"{name} is not a valid DICOM UID.")
    return value


def check_job_id(value: str) -> str:
    """``value`` if it has the shape of a job id; otherwise a 400."""
    if not JOB_ID.fullmatch(value):
        raise bad_request("The job id must be 1-128 letters, digits, '_' or '-'.")
    return value


def when(epoch: float | None) -> str:
    """A moment as local ``YYYY-MM-DD HH:MM:SS`` (empty for none)."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def duration(seconds: float | None) -> str:
    """A duration as ``0.42 s``, ``3 min 12 s`` or ``2 h 5 min`` (empty for none)."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def ago(epoch: float | None) -> str:
    """How long ago ``epoch`` was (empty for none)."""
    return "" if epoch is None else f"{duration(max(time.time() - epoch, 0.0))} ago"


def _install_filters(env: Any) -> None:
    for name, function in (("when", when), ("duration", duration), ("ago", ago)):
        env.filters.setdefault(name, function)
