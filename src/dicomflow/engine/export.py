"""Export: a processed round's results go where its manifest says, a service job's
results to the node's endpoints.

C-STORE to a peer and files into a folder go through the outbox
(:mod:`dicomflow.engine.outbox`), archive outputs through the archive outbox
(:mod:`dicomflow.engine.archive_outputs`). Then the round's folder is removed (its
inputs kept in ``processed/`` with ``keep_inputs``).
"""

import json
import os
import shutil
from pathlib import Path

from dicomflow import metrics
from dicomflow.destinations import (
    OUTPUT_MANIFEST,
    ArchiveDestination,
    DicomDestination,
    OutboxDestination,
    OutputManifest,
)
from dicomflow.engine.archive_outputs import ArchiveOutbox
from dicomflow.engine.outbox import Outbox
from dicomflow.engine.round_store import Round, RoundStore
from dicomflow.settings import NodeSettings


class Export:
    """Moves results to the outboxes."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        archive_outbox: ArchiveOutbox,
        store: RoundStore,
        settings: NodeSettings,
    ) -> None:
        """``settings`` say, when results are exported, where services' results go
        (``endpoints``) and whether a round's inputs are kept (``keep_inputs``)."""
        self.outbox = outbox
        self.archive_outbox = archive_outbox
        self._store = store
        self._settings = settings

    def round(self, job: Round) -> None:
        """Export a round whose job succeeded, then finish it."""
        manifest_path = job.output_dir / OUTPUT_MANIFEST
        manifest = (
            OutputManifest.from_json(json.loads(manifest_path.read_text()))
            if manifest_path.exists()
            else OutputManifest()
        )
        for entry in manifest.outputs:
            folder = job.output_dir / entry.folder
            if not folder.exists():
                continue
            name = f"{job.round_id}-{entry.folder}"
            destination = entry.destination
            if isinstance(destination, ArchiveDestination):
                self.archive_outbox.add(name, folder, destination.datastore)
            else:  # C-STORE to a peer, or files into a folder: through the outbox
                item = OutboxDestination(
                    destination, job.processed_at, folder=entry.folder, files=entry.files
                )
                self.outbox.add(name, folder, item)
        if self._settings.keep_inputs:
            self._keep_processed(job, self._settings.data_directory.resolve() / "processed")
        self._store.finish(job)

    def service_folder(self, name: str, folder: Path, processed_at: float | None) -> None:
        """Send the DICOM files of ``folder`` (a service job's results, made at
        ``processed_at``) to every endpoint via the outbox, each a copy."""
        for index, address in enumerate(self._settings.endpoint_addresses()):
            staging = folder.parent / f".{folder.name}.outbox-{index}"
            shutil.copytree(folder, staging, dirs_exist_ok=True)
            destination = DicomDestination(
                address.ip, address.port, address.ae_title, tls=address.tls
            )
            item = OutboxDestination(destination, processed_at, metrics.KIND_SERVICE)
            self.outbox.add(f"{name}-{index}", staging, item)

    @staticmethod
    def _keep_processed(job: Round, processed: Path) -> None:
        target = processed / job.round_id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(job.instances_dir, target)
