"""What the web application reads (and the few things it may act on)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dicomflow.queue.backend import PerThreadBackend
from dicomflow.settings import NodeSettings
from dicomflow.web.auth import Credentials

if TYPE_CHECKING:
    from dicomflow.engine.node import Node


@dataclass
class WebContext:
    """The node (when one runs in this process), its settings and the web credentials.

    Everything the pages show is read from here: the node's in-memory state when
    ``node`` is given, otherwise only what is on disk, in the queue and the archive.
    """

    settings: NodeSettings
    credentials: Credentials
    node: "Node | None" = None
    queue: PerThreadBackend = field(init=False)

    def __post_init__(self) -> None:
        self.queue = PerThreadBackend(self.settings.resolved_queue_url())

    @property
    def data_root(self) -> Path:
        return self.settings.data_directory.resolve()

    @property
    def archive_datastore(self) -> str | None:
        """The archive's datastore URL, if the node archives."""
        return self.settings.archive_datastore

    @property
    def services_directory(self) -> Path | None:
        return self.settings.services_directory
