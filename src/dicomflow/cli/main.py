"""The ``dicomflow`` command: a thin layer that builds settings and calls the node."""

import logging
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from dicomflow.address import Address
from dicomflow.cli import querying
from dicomflow.cli.cod import app as cod_app
from dicomflow.cli.deidentify import app as deid_app
from dicomflow.cli.identity import app as identity_app
from dicomflow.cli.sending import (
    ClientTlsCa,
    ClientTlsCert,
    ClientTlsKey,
    Password,
    PasswordStdin,
    Tls,
    Username,
)
from dicomflow.cli.service import app as service_app
from dicomflow.cli.tls import app as tls_app
from dicomflow.errors import DicomflowError

if TYPE_CHECKING:  # the engine, web and pipeline modules are imported by the commands that
    # run them: `dicomflow send`, `find` or an error message start without them
    from dicomflow.engine.series_archive import Consumers
    from dicomflow.net.user_identity import UserIdentity
    from dicomflow.node.pipeline import AbstractPipeline
    from dicomflow.settings import NodeSettings
    from dicomflow.web.server import WebServer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(service_app, name="service")
app.add_typer(cod_app, name="cod")
app.add_typer(tls_app, name="tls")
app.add_typer(identity_app, name="identity")
app.add_typer(deid_app, name="deid")
app.command("find")(querying.find)
app.command("move")(querying.move)
app.command("get")(querying.get)
console = Console(stderr=True, soft_wrap=True)  # errors, progress, what a server is doing
results = Console(soft_wrap=True, highlight=False)  # what a command reports back, on stdout
logger = logging.getLogger(__name__)

PipelineArg = Annotated[str, typer.Argument(help="file.py, file.py:Class or module:Class")]
Port = Annotated[int | None, typer.Option("--port", "-p", help="Port to listen on.")]
Ip = Annotated[str | None, typer.Option("--ip", help="Address to listen on.")]
AeTitle = Annotated[str | None, typer.Option("--ae-title", help="The node's AE title.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")]
Endpoint = Annotated[
    list[str] | None,
    typer.Option(
        "--endpoint",
        "-e",
        help="AE@host:port (?tls: over DICOM TLS, ?deid: sent de-identified, ?tls&deid);"
        " repeatable.",
    ),
]
MoveDestination = Annotated[
    list[str] | None,
    typer.Option(
        "--move-destination",
        help="Where C-MOVE may send: AE@host:port (?tls: over DICOM TLS); repeatable.",
    ),
]
QueueUrl = Annotated[str | None, typer.Option(help="sqlite:///path or redis://host/db")]
Archive = Annotated[str | None, typer.Option(help="Archive datastore (dir or URL).")]
CatalogUrl = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        help="The archive's catalog: a SQLite file, sqlite:///path or postgresql://… "
        "(default: catalog.sqlite in a local datastore, else in the data directory).",
    ),
]
Services = Annotated[Path | None, typer.Option(help="Registry services folder.")]
WebPort = Annotated[int | None, typer.Option(help="Dashboard port (0: any free).")]
WebIp = Annotated[str | None, typer.Option(help="Dashboard address.")]
TlsCert = Annotated[
    Path | None, typer.Option("--tls-cert", help="DICOM TLS: the node's certificate (PEM).")
]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", help="DICOM TLS: its private key.")]
TlsCa = Annotated[
    Path | None,
    typer.Option("--tls-ca", help="DICOM TLS: CA certificates peers' certificates must chain to."),
]
TlsPort = Annotated[
    int | None,
    typer.Option("--tls-port", help="DICOM TLS on this port; --port stays plain DICOM."),
]
TlsRequireClientCert = Annotated[
    bool | None,
    typer.Option(
        "--tls-require-client-cert/--no-tls-require-client-cert",
        help="Refuse peers without a trusted certificate (default: when --tls-ca is given).",
    ),
]
WebTls = Annotated[
    bool | None,
    typer.Option(
        "--web-tls/--no-web-tls",
        help="HTTPS for the dashboard (default: when a TLS certificate is set).",
        show_default=False,
    ),
]
ArchiveDeid = Annotated[
    bool | None,
    typer.Option(
        "--archive-deid/--no-archive-deid",
        help="Archive de-identified instances only (PS3.15 Basic Profile, keyed pseudonyms).",
        show_default=False,
    ),
]
DeidOptions = Annotated[
    str | None,
    typer.Option(
        "--deid-options",
        help="De-identification profile options, comma-separated (e.g. clean_descriptors).",
    ),
]
DeidKeyFile = Annotated[
    Path | None,
    typer.Option("--deid-key-file", help="The pseudonym key (0600; default: DATA_DIR/deid/key)."),
]
DeidTable = Annotated[
    Path | None,
    typer.Option(
        "--deid-reidentification-table",
        help="Record what each pseudonym stands for in this file (0600).",
    ),
]
PeerPort = Annotated[int, typer.Argument(help="The peer's port.", min=1, max=65535)]
Aet = Annotated[str, typer.Option("--aet", help="Calling AE title.")]
Aec = Annotated[str, typer.Option("--aec", help="Called AE title.")]


def main() -> None:
    """The console script: a usage error (unknown option, bad value, missing file) is one
    line on stderr with exit code 2, like every other error."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        code = _usage_error(exc)
    except typer.Abort:
        code = 130
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException) -> int:
    context = getattr(exc, "ctx", None)
    if type(exc).__name__ != "NoArgsIsHelpError":  # without arguments typer showed the help
        hint = f" (see: {context.command_path} --help)" if context is not None else ""
        console.print(f"[red]error:[/red] {escape(exc.format_message())}{hint}", highlight=False)
    return int(getattr(exc, "exit_code", 2))


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"dicomflow {installed_version('dicomflow')}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """A DICOM processing node: receive, collect, process in isolation, export, archive."""


def _message(exc: Exception) -> str:
    """An error as one sentence; an OS error names the file it is about."""
    if isinstance(exc, OSError) and not isinstance(exc, DicomflowError) and exc.filename:
        return f'Cannot use "{exc.filename}": {exc.strerror}.'
    return str(exc)


def fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _open(spec: str | None, overrides: dict[str, Any], no_web: bool = False) -> None:
    from dicomflow.engine import assembly
    from dicomflow.logs import configure_logging
    from dicomflow.web.server import start_web

    given = {**overrides, "web_enabled": False} if no_web else overrides
    settings, pipeline = _settings_for(spec, given)
    try:
        consumer = _consumer(settings)
    except DicomflowError as exc:
        fail(str(exc), 2)
    if spec is None and consumer is None:
        fail("give a PIPELINE file, or --services DIR / --archive URL for a node without one.", 2)
    web: WebServer | None = None
    try:
        if pipeline is None:
            configure_logging(settings.log_level, settings.log_path)
            node = assembly.run(None, settings, consumer=consumer)
        else:  # the pipeline's open() configures its logging, then calls run()
            pipeline.open(blocking=False, consumer=consumer)
            node = pipeline.node
        try:
            web = start_web(settings, node)
        except (DicomflowError, OSError):
            node.stop()
            raise
    except (DicomflowError, OSError) as exc:
        fail(_message(exc))
    _serve_until_signal(settings, web)
    node.stop()


def _settings_for(
    spec: str | None, given: dict[str, Any]
) -> "tuple[NodeSettings, AbstractPipeline | None]":
    """The settings (and the pipeline, if ``spec`` names one), or a one-line error."""
    from dicomflow.cli.loader import load_pipeline
    from dicomflow.cli.setting_error import class_origins, option_name, setting_error
    from dicomflow.settings import build_settings

    given = {key: value for key, value in given.items() if value is not None}
    origins = {field: f"option {option_name(field)}" for field in given}
    try:
        if spec is None:
            return build_settings(**given), None
        pipeline_class = load_pipeline(spec)
        origins = {**class_origins(pipeline_class), **origins}
        pipeline = pipeline_class(start=False, **given)
        return pipeline.settings, pipeline
    except ValidationError as exc:
        fail(setting_error(exc, origins), 2)
    except DicomflowError as exc:
        fail(str(exc), 2)


def _serve_until_signal(settings: "NodeSettings", web: "WebServer | None") -> None:
    """Say where the dashboard is (and its token), wait for Ctrl-C, stop the dashboard."""
    from dicomflow.engine.assembly import wait_for_signal

    if web is not None:
        console.print(f"dashboard: {web.url}  (token: {_token_hint(settings)})", highlight=False)
    wait_for_signal()
    if web is not None:
        web.stop()


def _token_hint(settings: "NodeSettings") -> str:
    from dicomflow.web.auth import TOKEN_FILE

    if settings.web_token is not None or settings.web_user:
        return "as configured"
    return str(settings.data_directory.resolve() / TOKEN_FILE)


def _consumer(settings: "NodeSettings") -> "Consumers | None":
    """What stable series go to: registry services and/or the archive."""
    from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
    from dicomflow.services.consumer import ServiceScheduler

    url = settings.resolved_queue_url()
    services = settings.services_directory
    if services is not None and not services.is_dir():
        fail(
            f'Services folder "{services}" does not exist; install a service into it first '
            f"(dicomflow service install NAME -p PATH -r {services}).",
            2,
        )
    consumers = Consumers(
        ServiceScheduler(services, url) if services is not None else None,
        ArchiveScheduler.from_settings(settings, settings.archive_datastore)
        if settings.archive_datastore
        else None,
    )
    return consumers if consumers.consumers else None


@app.command()
def serve(
    pipeline: Annotated[
        str | None, typer.Argument(help="file.py, file.py:Class or module:Class")
    ] = None,
    port: Port = None,
    ip: Ip = None,
    ae_title: AeTitle = None,
    data_dir: DataDir = None,
    endpoint: Endpoint = None,
    move_destination: MoveDestination = None,
    quiet_period: Annotated[float | None, typer.Option(help="Seconds without instances.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Processing timeout (s).")] = None,
    workers: Annotated[int | None, typer.Option(help="Concurrent rounds.")] = None,
    log_path: Annotated[Path | None, typer.Option(help="Weekly rotating log file.")] = None,
    services: Services = None,
    queue: QueueUrl = None,
    queue_workers: Annotated[int | None, typer.Option(help="Local worker processes.")] = None,
    archive: Archive = None,
    catalog: CatalogUrl = None,
    web_port: WebPort = None,
    web_ip: WebIp = None,
    no_web: Annotated[bool, typer.Option("--no-web", help="Serve no dashboard.")] = False,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_ca: TlsCa = None,
    tls_port: TlsPort = None,
    tls_require_client_cert: TlsRequireClientCert = None,
    web_tls: WebTls = None,
    archive_deid: ArchiveDeid = None,
    deid_options: DeidOptions = None,
    deid_key_file: DeidKeyFile = None,
    deid_reidentification_table: DeidTable = None,
) -> None:
    """Run a node (a pipeline, registry services, or both) until Ctrl-C."""
    _open(
        pipeline,
        {
            **_tls_settings(tls_cert, tls_key, tls_ca, tls_port, tls_require_client_cert),
            **_deid_settings(
                archive_deid, deid_options, deid_key_file, deid_reidentification_table
            ),
            "port": port,
            "ip": ip,
            "ae_title": ae_title,
            "data_directory": data_dir,
            "endpoints": endpoint,
            "move_destinations": move_destination,
            "quiet_period_s": quiet_period,
            "processing_timeout_s": timeout,
            "workers": workers,
            "log_path": log_path,
            "services_directory": services,
            "queue_url": queue,
            "queue_workers": queue_workers,
            "archive_datastore": archive,
            "catalog": catalog,
            "web_port": web_port,
            "web_ip": web_ip,
            "web_tls": web_tls,
        },
        no_web=no_web,
    )


@app.command()
def run(
    pipeline: PipelineArg,
    port: Port = None,
    data_dir: DataDir = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_ca: TlsCa = None,
    tls_port: TlsPort = None,
    tls_require_client_cert: TlsRequireClientCert = None,
    move_destination: MoveDestination = None,
    catalog: CatalogUrl = None,
    archive_deid: ArchiveDeid = None,
    deid_options: DeidOptions = None,
    deid_key_file: DeidKeyFile = None,
    deid_reidentification_table: DeidTable = None,
) -> None:
    """Run a pipeline file as ``python PIPELINE.py`` would, until Ctrl-C."""
    tls = _tls_settings(tls_cert, tls_key, tls_ca, tls_port, tls_require_client_cert)
    deid = _deid_settings(archive_deid, deid_options, deid_key_file, deid_reidentification_table)
    settings = {"port": port, "data_directory": data_dir, "catalog": catalog}
    _open(pipeline, {**settings, "move_destinations": move_destination, **tls, **deid})


def _tls_settings(
    certificate: Path | None,
    private_key: Path | None,
    ca_certificates: Path | None,
    port: int | None,
    require_client_certificate: bool | None,
) -> dict[str, Any]:
    """The DICOM TLS options as settings (an option not given leaves its setting be)."""
    return {
        "tls_certificate": certificate,
        "tls_private_key": private_key,
        "tls_ca_certificates": ca_certificates,
        "tls_port": port,
        "tls_require_client_certificate": require_client_certificate,
    }


def _deid_settings(
    archive_deid: bool | None,
    options: str | None,
    key_file: Path | None,
    reidentification_table: Path | None,
) -> dict[str, Any]:
    """The de-identification options as settings (an option not given leaves its setting
    be); ``--deid-options a,b`` is the list ``deid_options``."""
    names = None if options is None else [n.strip() for n in options.split(",") if n.strip()]
    return {
        "archive_deid": archive_deid,
        "deid_options": names,
        "deid_key_file": key_file,
        "deid_reidentification_table": reidentification_table,
    }


@app.command()
def dashboard(
    data_dir: DataDir = None,
    queue: QueueUrl = None,
    archive: Archive = None,
    catalog: CatalogUrl = None,
    services: Services = None,
    web_port: WebPort = None,
    web_ip: WebIp = None,
    web_tls: WebTls = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate to serve HTTPS with.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="Its PEM private key.")] = None,
) -> None:
    """Serve the dashboard, DICOMweb and /metrics without a node (e.g. beside Redis workers,
    or to browse an archive), until Ctrl-C; over HTTPS with a certificate."""
    from dicomflow.logs import configure_logging
    from dicomflow.web.server import start_web

    settings, _ = _settings_for(
        None,
        {
            "data_directory": data_dir,
            "queue_url": queue,
            "archive_datastore": archive,
            "catalog": catalog,
            "services_directory": services,
            "web_port": web_port,
            "web_ip": web_ip,
            "web_tls": web_tls,
            "tls_certificate": tls_cert,
            "tls_private_key": tls_key,
        },
    )
    configure_logging(settings.log_level, settings.log_path)
    try:
        web = start_web(settings, None)
    except (DicomflowError, OSError) as exc:
        fail(_message(exc))
    if web is None:
        fail("web_enabled is off: nothing to serve.", 2)
    _serve_until_signal(settings, web)


@app.command()
def worker(
    queue: Annotated[str, typer.Option("--queue", "-q", help="sqlite:///path or redis://host/db")],
    name: Annotated[str | None, typer.Option(help="Worker name.")] = None,
    burst: Annotated[bool, typer.Option(help="Stop when no job is ready.")] = False,
) -> None:
    """Run a queue worker (on this or any other machine) until Ctrl-C."""
    from dicomflow.logs import configure_logging
    from dicomflow.queue.worker import run_worker

    configure_logging("INFO")
    try:
        run_worker(queue, name=name, burst=burst)
    except (DicomflowError, OSError) as exc:
        fail(_message(exc))
    except KeyboardInterrupt:
        pass


@app.command()
def send(
    host: str,
    port: PeerPort,
    files: Annotated[list[Path], typer.Argument(help="Files or folders (recursive).", exists=True)],
    aet: Aet = "DICOMFLOW",
    aec: Aec = "ANY-SCP",
    tls: Tls = False,
    tls_cert: ClientTlsCert = None,
    tls_key: ClientTlsKey = None,
    tls_ca: ClientTlsCa = None,
    username: Username = None,
    password: Password = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Send DICOM files to a peer over one association (C-STORE); with --tls over DICOM
    TLS, with --username presenting a user identity."""
    from dicomflow.cli.sending import collect_files, send_with_progress, tls_files

    identity = _identity(username, password, password_stdin)
    paths = collect_files(files)
    if not paths:
        fail("no DICOM files found in the given paths.", 2)
    files_tls = tls_files(tls, tls_cert, tls_key, tls_ca)
    try:
        report = send_with_progress(
            Address(host, port, aec), paths, aet, console, files_tls, identity
        )
    except (DicomflowError, ValueError) as exc:
        fail(str(exc))
    over = " over TLS" if files_tls is not None else ""
    results.print(
        f"sent {len(report.sent)} of {len(paths)} instance(s) to {aec}@{host}:{port}{over}"
    )
    for name, reason in report.failed.items():
        results.print(f"[red]failed[/red] {name}: {reason}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


def _identity(
    username: str | None, password: str | None, password_stdin: bool
) -> "UserIdentity | None":
    from dicomflow.cli.sending import identity_from

    try:
        return identity_from(username, password, password_stdin)
    except ValueError as exc:
        fail(str(exc), 2)


@app.command()
def echo(
    host: str,
    port: PeerPort,
    aet: Aet = "DICOMFLOW",
    aec: Aec = "ANY-SCP",
    tls: Tls = False,
    tls_cert: ClientTlsCert = None,
    tls_key: ClientTlsKey = None,
    tls_ca: ClientTlsCa = None,
    username: Username = None,
    password: Password = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Check that a peer answers C-ECHO; with --tls over DICOM TLS."""
    from dicomflow.cli.sending import tls_files
    from dicomflow.net.requestor import echo as dicom_echo

    identity = _identity(username, password, password_stdin)
    files_tls = tls_files(tls, tls_cert, tls_key, tls_ca)
    try:
        dicom_echo(Address(host, port, aec), aet, files_tls, identity=identity)
    except (DicomflowError, ValueError) as exc:
        fail(str(exc))
    over = " over TLS" if files_tls is not None else ""
    results.print(f"C-ECHO to {aec}@{host}:{port}{over}: success")


@app.command()
def demo(
    pipeline: PipelineArg = "examples/bone_mask.py",
    count: Annotated[int, typer.Option(help="Instances in the synthetic CT series.")] = 24,
    data_dir: DataDir = Path("dicomflow-data"),
    keep: Annotated[
        bool | None,
        typer.Option("--keep/--no-keep", help="Keep serving the dashboard (default: in a tty)."),
    ] = None,
) -> None:
    """Start a node, its dashboard and a local result endpoint, send a CT series, show where
    results landed."""
    from dicomflow.cli.demo import run_demo

    try:
        run_demo(pipeline, count, data_dir or Path("dicomflow-data"), results, keep)
    except DicomflowError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
