"""A node with an archive and its dashboard, and a DICOMweb client for it."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from web_support import WebNode, serve_web

from dicomflow.engine.node import Node, wait_until
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.settings import build_settings


@dataclass
class ArchiveWeb:
    """A running node that archives every series, with its dashboard."""

    node: Node
    web: WebNode

    @property
    def url(self) -> str:
        return self.web.url

    def client(self) -> DICOMwebClient:
        return DICOMwebClient(
            f"{self.web.url}/dicomweb", headers={"Authorization": f"Bearer {self.web.token}"}
        )

    def wait_archived(self, count: int, timeout_s: float = 30.0, **search_filters: str) -> None:
        """Wait until QIDO-RS finds ``count`` instances (matching ``search_filters``)."""
        client = self.client()

        def found() -> int:
            return len(client.search_for_instances(search_filters=search_filters))

        if not wait_until(lambda: found() >= count, timeout_s):
            raise AssertionError(f"{found()} of {count} instances archived after {timeout_s}s")


@contextmanager
def archive_web(folder: Path) -> Iterator[ArchiveWeb]:
    datastore = folder / "archive"
    settings = build_settings(
        port=0,
        data_directory=folder / "data",
        archive_datastore=str(datastore),
        series_quiet_period_s=0.2,
        queue_workers=1,
    )
    node = Node(
        None, settings, Consumers(ArchiveScheduler(str(datastore), settings.resolved_queue_url()))
    )
    node.start()
    web = serve_web(settings, node)
    try:
        yield ArchiveWeb(node, web)
    finally:
        web.server.stop()
        node.stop()


def encoded(ds: Dataset) -> bytes:
    """The bytes dicomweb-client uploads for ``ds``."""
    with io.BytesIO() as buffer:
        pydicom.dcmwrite(buffer, ds)
        return buffer.getvalue()


def part10(ds: Dataset) -> Dataset:
    """``ds`` as read back from a Part-10 file (with preamble and file meta)."""
    with io.BytesIO() as buffer:
        ds.save_as(buffer, enforce_file_format=True)
        return pydicom.dcmread(io.BytesIO(buffer.getvalue()))
