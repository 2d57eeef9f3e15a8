"""The endpoints and the outbox: results waiting for their peer, re-sending one now, and the
results set aside because no retry would send them."""

import json
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from dicomflow.engine.outbox import DESTINATION, REASONS, last_error, read_destination
from dicomflow.settings import format_endpoint
from dicomflow.web.context import WebContext
from dicomflow.web.privacy import file_identifiers, redact_text
from dicomflow.web.views import ago, answer, bad_request, context_of, not_found, render, when

logger = logging.getLogger(__name__)

router = APIRouter()

ITEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def check_item_name(name: str) -> str:
    """``name`` if it can be an outbox item (a plain folder name); otherwise a 400."""
    if not ITEM_NAME.fullmatch(name) or ".." in name:
        raise bad_request("An outbox item name is letters, digits, '_', '-' and '.' only.")
    return name


def outbox_root(context: WebContext) -> Path:
    node = context.node
    return node.outbox.root if node is not None else context.data_root / "outbox"


def items(context: WebContext) -> list[dict[str, Any]]:
    """Each item waiting: its destination, files, bytes and age."""
    root = outbox_root(context)
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / DESTINATION).is_file()):
        try:
            found.append(_item(folder))
        except FileNotFoundError:  # delivered while being listed
            continue
    return found


def _item(folder: Path) -> dict[str, Any]:
    try:
        target = read_destination(folder).destination.describe()
    except (OSError, ValueError):
        target = "(unreadable destination)"
    files = list(folder.glob("*.dcm"))
    since = folder.stat().st_mtime
    error = last_error(folder)
    return {
        "name": folder.name,
        "destination": target,
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "since": when(since),
        "waiting": ago(since),
        "last_error": f"{error.get('error')} ({ago(float(error.get('at', 0)))})" if error else "",
    }


def unsendable_root(context: WebContext) -> Path:
    node = context.node
    return (
        node.outbox.unsendable_root if node is not None else context.data_root / "outbox-unsendable"
    )


def set_aside(context: WebContext) -> list[dict[str, Any]]:
    """Each item set aside in ``outbox-unsendable/``: its files, the reason for each and when;
    the patient's identifying values hidden from the reasons unless
    ``show_patient_identifiers``."""
    root = unsendable_root(context)
    if not root.is_dir():
        return []
    show = context.settings.show_patient_identifiers
    found = []
    for folder in sorted(p for p in root.iterdir() if (p / REASONS).is_file()):
        try:
            found.append(_set_aside_item(folder, show))
        except FileNotFoundError:  # removed while being listed
            continue
    return found


def _set_aside_item(folder: Path, show: bool) -> dict[str, Any]:
    reasons_path = folder / REASONS
    try:
        reasons = {
            str(name): str(text) for name, text in json.loads(reasons_path.read_text()).items()
        }
    except (ValueError, AttributeError):
        reasons = {"": f"(unreadable {REASONS})"}
    if not show:
        hidden = file_identifiers(folder.glob("*.dcm"))
        reasons = {
            redact_text(name, hidden): redact_text(text, hidden) for name, text in reasons.items()
        }
    since = reasons_path.stat().st_mtime
    return {
        "name": folder.name,
        "files": len(list(folder.glob("*.dcm"))),
        "reasons": [{"file": name, "reason": text} for name, text in sorted(reasons.items())],
        "since": when(since),
        "ago": ago(since),
    }


def endpoints(context: WebContext) -> list[str]:
    return [format_endpoint(address) for address in context.settings.endpoint_addresses()]


@router.get("/outbox", response_class=HTMLResponse)
def outbox_page(request: Request) -> HTMLResponse:
    context = context_of(request)
    values = {
        "endpoints": endpoints(context),
        "items": items(context),
        "set_aside": set_aside(context),
        "has_node": context.node is not None,
    }
    return render(request, "outbox.html", values)


@router.get("/api/outbox")
def outbox_json(request: Request) -> JSONResponse:
    """``{"endpoints": ["AE@host:port"], "items": [{"name", "destination", "files", ...}],
    "set_aside": [{"name", "files", "reasons": [{"file", "reason"}], "since", "ago"}]}``."""
    context = context_of(request)
    values = {"endpoints": endpoints(context), "items": items(context)}
    return JSONResponse({**values, "set_aside": set_aside(context)})


@router.post("/outbox/{name}/resend")
def resend(request: Request, name: str) -> Response:
    """Send one waiting item again now."""
    context = context_of(request)
    check_item_name(name)
    if context.node is None:
        message = "No node runs in this process: the outbox is only shown."
        return answer(request, "/outbox", message, ok=False)
    try:
        context.node.outbox.resend(name)
    except KeyError:
        raise not_found(f"The outbox has no item {name}.") from None
    logger.info("outbox %s: re-sent from the dashboard", name)
    return answer(request, "/outbox", f"Outbox item {name} is being sent again.")
