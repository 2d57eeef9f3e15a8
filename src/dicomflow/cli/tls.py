"""``dicomflow tls selfsigned DIR``: a certificate and private key for DICOM TLS trials."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from dicomflow import tls

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Certificates for DICOM TLS and HTTPS: selfsigned DIR writes a pair to try them with.",
)
console = Console(stderr=True, soft_wrap=True)  # errors
results = Console(soft_wrap=True, highlight=False)  # what the command reports, on stdout

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


@app.command("selfsigned")
def selfsigned(
    directory: Annotated[Path, typer.Argument(help="Folder for certificate.pem, private-key.pem.")],
    common_name: Annotated[
        str, typer.Option("--common-name", help="The certificate's common name.")
    ] = "dicomflow",
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="A host name or IP address it is valid for; repeatable."),
    ] = None,
) -> None:
    """Write a self-signed certificate (its own CA) and its private key (mode 0600)."""
    try:
        pair = tls.make_self_signed(
            directory, common_name=common_name, hosts=tuple(host or DEFAULT_HOSTS)
        )
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(_why(directory, exc))}", highlight=False)
        raise typer.Exit(1) from None
    results.print(f"certificate: {pair.certificate}")
    results.print(f"private key: {pair.private_key}")
    results.print(
        f"serve with: dicomflow serve ... --tls-cert {pair.certificate}"
        f" --tls-key {pair.private_key}; peers trust it as their CA"
        f" (e.g. storescu +tls KEY CERT +cf {pair.certificate})"
    )


def _why(directory: Path, exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f'Cannot write into "{exc.filename or directory}": {exc.strerror or exc}.'
    return f"Cannot make a certificate: {exc}."
