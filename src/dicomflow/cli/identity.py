"""``dicomflow identity add``: keep the user identities file (``user_identities_file``)
a node checks DICOM user identities against (format in :mod:`dicomflow.net.user_identity`)."""

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from dicomflow.address import valid_ae_title
from dicomflow.errors import DicomflowError
from dicomflow.net.user_identity import Identities, KnownUser, PasswordHash, save

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="The user identities file DICOM peers are checked against: add a user.",
)
console = Console(stderr=True, soft_wrap=True)  # errors
results = Console(soft_wrap=True, highlight=False)  # what a command reports back, on stdout

MAXIMUM_NAME = 256  # characters; a username travels in a 64 KiB sub-item


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.command("add")
def add(
    file: Annotated[Path, typer.Argument(help="The identities file (created if missing).")],
    name: Annotated[str, typer.Argument(help="The username.")],
    ae: Annotated[
        list[str] | None,
        typer.Option("--ae", help="Calling AE title that may use it (repeatable; none: any)."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="A username-only identity (no password).")
    ] = False,
) -> None:
    """Add a user, or replace one of that name, prompting for its password; the file is
    written whole, readable by its owner alone (0600)."""
    titles = _titles(ae or [])
    if not name or len(name) > MAXIMUM_NAME or not name.isprintable():
        _fail(f"a username must be 1-{MAXIMUM_NAME} printable characters.", 2)
    password_hash = None if no_password else PasswordHash.make(_password(password_stdin))
    try:
        identities = Identities.load(file) if file.exists() else Identities(file, {})
        users = {**identities.users, name: KnownUser(name, password_hash, titles)}
        save(Identities(file, users))
    except (DicomflowError, OSError) as exc:
        _fail(str(exc))
    kind = "username only" if password_hash is None else "username and password"
    where = ", ".join(sorted(titles)) or "any AE title"
    results.print(f"{escape(name)} ({kind}, from {escape(where)}) saved in {escape(str(file))}")


def _titles(given: list[str]) -> frozenset[str]:
    bad = [title for title in given if not valid_ae_title(title)]
    if bad:
        _fail(f'"{bad[0]}" is not a valid AE title (1-16 printable ASCII characters).', 2)
    return frozenset(title.strip() for title in given)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    if not password:
        _fail("the password is empty (for a username-only identity: --no-password).", 2)
    return password
