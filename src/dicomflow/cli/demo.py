"""``dicomflow demo``: a node, a local result endpoint and a synthetic CT series, end to end."""

import logging
import sys
import threading
from pathlib import Path

from pydicom import dcmread
from rich.console import Console
from rich.table import Table

from dicomflow.address import Address
from dicomflow.cli.loader import load_pipeline
from dicomflow.cli.sending import send_with_progress
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import instance_file_name
from dicomflow.durable import make_private_directory, write_durably
from dicomflow.engine.assembly import wait_for_signal
from dicomflow.engine.node import Node, wait_until
from dicomflow.engine.series_archive import ArchiveScheduler
from dicomflow.errors import DicomflowError
from dicomflow.logs import configure_logging
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.storage import SUCCESS as STATUS_SUCCESS
from dicomflow.net.storage import ReceivedInstance
from dicomflow.web.auth import TOKEN_FILE
from dicomflow.web.server import WebServer, start_web

DEMO_PACS = "DEMO-PACS"
WAIT_S = 120.0
WEB_PORT = 8080


class _Endpoint:
    """A minimal PACS stand-in that stores what it receives in a folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        make_private_directory(folder)  # inside the node's data directory: patient data
        self.files: list[Path] = []
        self._lock = threading.Lock()
        self.scp = StoreSCP(ae_title=DEMO_PACS, ip="127.0.0.1", port=0, on_store=self._store)

    def _store(self, instance: ReceivedInstance) -> int:
        path = self.folder / instance_file_name(str(instance.dataset.SOPInstanceUID))
        write_durably(path, instance.encoded())
        with self._lock:
            self.files.append(path)
        return STATUS_SUCCESS


def run_demo(
    spec: str, count: int, data_dir: Path, console: Console, keep: bool | None = None
) -> None:
    """Run the demo; raise :class:`DicomflowError` if the result does not arrive.

    With ``keep`` (by default: when run in a terminal) the node and its dashboard stay
    up after the result arrived, until Ctrl-C.
    """
    data_dir = data_dir.resolve()
    log_path = data_dir / "logs" / "dicomflow.log"
    configure_logging("INFO", log_path)
    logging.getLogger().handlers[0].setLevel(logging.WARNING)
    endpoint = _Endpoint(data_dir / "demo-pacs")
    pipeline_class = load_pipeline(spec)
    archive = data_dir / "archive"
    pipeline = pipeline_class(
        start=False,
        port=0,
        data_directory=data_dir,
        log_path=log_path,
        endpoints=[f"{DEMO_PACS}@127.0.0.1:{endpoint.scp.port}"],
        archive_datastore=str(archive),
        series_quiet_period_s=1.0,
        web_port=WEB_PORT,
    )
    settings = pipeline.settings
    pipeline.open(
        blocking=False,
        configure_logs=False,
        consumer=ArchiveScheduler(str(archive), settings.resolved_queue_url()),
    )
    web: WebServer | None = None
    try:
        web = _start_web(pipeline.node)
        console.print(f"dashboard [bold]{web.url}[/bold] (token in {data_dir / TOKEN_FILE})")
        _exercise(pipeline.node, endpoint, count, data_dir, console)
        _wait_for_archive(archive, console)
        console.print(f"log: {log_path}")
        if keep if keep is not None else sys.stdin.isatty():
            console.print(f"dashboard: [bold]{web.url}[/bold]; Ctrl-C stops the demo")
            wait_for_signal()
    finally:
        if web is not None:
            web.stop()
        pipeline.close()
        endpoint.scp.close()


def _start_web(node: Node) -> WebServer:
    """The dashboard on port 8080, or on any free port when 8080 is taken."""
    try:
        server = start_web(node.settings, node)
    except DicomflowError:
        server = start_web(node.settings.model_copy(update={"web_port": 0}), node)
    assert server is not None
    return server


def _wait_for_archive(archive: Path, console: Console) -> None:
    """Wait (briefly) for the series to be archived, and say where."""
    found = wait_until(lambda: any(archive.glob("studies/*/series/*/metadata.json")), 30.0)
    if found:
        console.print(f"archived series in [bold]{archive}[/bold]")
    else:
        console.print("the series was not archived yet; see the dashboard's jobs page")


def _exercise(
    node: Node, endpoint: _Endpoint, count: int, data_dir: Path, console: Console
) -> None:
    port = node.port
    settings = node.settings
    console.print(f"node [bold]{settings.ae_title}[/bold] listening on 127.0.0.1:{port}")
    console.print(f"result endpoint [bold]{DEMO_PACS}[/bold] on 127.0.0.1:{endpoint.scp.port}")
    files = write_series(make_ct_series(count, rows=128, columns=128), data_dir / "demo-input")
    progress = Console(stderr=True, soft_wrap=True)
    send_with_progress(Address("127.0.0.1", port, settings.ae_title), files, "DEMO-CT", progress)
    counters = node.counters
    done = wait_until(lambda: counters.delivered or counters.rounds_failed, WAIT_S)
    if not done or counters.rounds_failed:
        raise DicomflowError(f"The pipeline did not deliver a result; see {data_dir / 'failed'}.")
    _show(endpoint, console)


def _show(endpoint: _Endpoint, console: Console) -> None:
    table = Table(title="Results delivered to the endpoint")
    for column in ("file", "series", "instance"):
        table.add_column(column)
    headers = [(dcmread(path, stop_before_pixels=True), path) for path in endpoint.files]
    headers.sort(key=lambda item: int(item[0].get("InstanceNumber", 0)))
    for header, path in headers[:5]:
        table.add_row(
            path.name,
            str(header.get("SeriesDescription", "")),
            str(header.get("InstanceNumber", "")),
        )
    console.print(table)
    console.print(f"{len(endpoint.files)} result instance(s) in [bold]{endpoint.folder}[/bold]")
