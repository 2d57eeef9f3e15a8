"""Export: a processed round's results go where its manifest says, a service job's
results to the node's endpoints.

C-STORE to a peer and files into a folder go through the outbox
(:mod:`dicomflow.engine.outbox`), archive outputs through the archive outbox
(:mod:`dicomflow.engine.archive_outputs`). Then the round's folder is removed (its
inputs kept in ``processed/`` with ``keep_inputs``).

De-identified outputs (a destination with ``deidentify``, a service job whose results
are marked so, an endpoint ``?deid``) are de-identified here, once, before anything of
the round or job enters an outbox (:mod:`dicomflow.engine.deidentified_export`): a
refused instance stops the export with :class:`~dicomflow.errors.DeidError` and nothing
has been sent.
"""

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

from dicomflow import metrics
from dicomflow.destinations import (
    OUTPUT_MANIFEST,
    ArchiveDestination,
    DicomDestination,
    FileDestination,
    OutboxDestination,
    OutputEntry,
    OutputManifest,
)
from dicomflow.dicom.deid import Deidentifier
from dicomflow.engine.archive_outputs import ArchiveOutbox
from dicomflow.engine.deidentification import deidentifier_from_settings
from dicomflow.engine.deidentified_export import DeidentifiedFolder, deidentify_folder
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

    def prepare(self, job: Round) -> dict[str, DeidentifiedFolder]:
        """De-identify the round's de-identified outputs (by output folder), before any of
        its results is exported; one already in the outbox (a restart) is not again.

        Raises:
            DeidError: an instance was refused or could not be de-identified (the message
                names its SOP class and why); nothing of the round was exported.
        """
        staged: dict[str, DeidentifiedFolder] = {}
        for entry in _manifest(job).outputs:
            folder = job.output_dir / entry.folder
            if _deidentifies(entry) and folder.exists() and not self._handed_over(job, entry):
                staged[entry.folder] = deidentify_folder(folder, self._deidentifier())
        return staged

    def round(self, job: Round, staged: dict[str, DeidentifiedFolder] | None = None) -> None:
        """Export a round whose job succeeded (its de-identified outputs as ``staged`` by
        :meth:`prepare`, which runs here if they were not), then finish it. The originals
        of a de-identified output never enter the outbox."""
        if staged is None:
            staged = self.prepare(job)
        for entry in _manifest(job).outputs:
            folder = job.output_dir / entry.folder
            if entry.folder in staged:
                self._add(
                    job, _staged_entry(entry, staged[entry.folder]), staged[entry.folder].folder
                )
                shutil.rmtree(folder, ignore_errors=True)  # a restart does not stage it again
            elif folder.exists() and not _deidentifies(entry):
                self._add(job, entry, folder)
        if self._settings.keep_inputs:
            self._keep_processed(job, self._settings.data_directory.resolve() / "processed")
        self._store.finish(job)

    def service_folder(
        self, name: str, folder: Path, processed_at: float | None, deidentify: bool = False
    ) -> None:
        """Send the DICOM files of ``folder`` (a service job's results, made at
        ``processed_at``) to every endpoint via the outbox, each a copy: de-identified for
        the ``?deid`` endpoints, or for all of them with ``deidentify`` (the service's
        ``"deidentify": true``).

        Raises:
            DeidError: an instance was refused or could not be de-identified; nothing of
                the folder was sent.
        """
        addresses = self._settings.endpoint_addresses()
        deidentified = None
        if any(deidentify or address.deidentify for address in addresses):
            deidentified = deidentify_folder(folder, self._deidentifier()).folder
        for index, address in enumerate(addresses):
            private = deidentify or address.deidentify
            staging = folder.parent / f".{folder.name}.outbox-{index}"
            shutil.copytree(
                deidentified if private and deidentified else folder, staging, dirs_exist_ok=True
            )
            destination = DicomDestination(
                address.ip, address.port, address.ae_title, tls=address.tls, deidentify=private
            )
            item = OutboxDestination(destination, processed_at, metrics.KIND_SERVICE)
            self.outbox.add(f"{name}-{index}", staging, item)
        if deidentified is not None:
            shutil.rmtree(deidentified, ignore_errors=True)

    def _add(self, job: Round, entry: OutputEntry, folder: Path) -> None:
        """Move one output folder of the round to its outbox."""
        name = f"{job.round_id}-{entry.folder}"
        destination = entry.destination
        if isinstance(destination, ArchiveDestination):
            self.archive_outbox.add(name, folder, destination.datastore)
        else:  # C-STORE to a peer, or files into a folder: through the outbox
            item = OutboxDestination(
                destination, job.processed_at, folder=entry.folder, files=entry.files
            )
            self.outbox.add(name, folder, item)

    def _handed_over(self, job: Round, entry: OutputEntry) -> bool:
        """Whether the outbox has the output's item already (added before a restart)."""
        return (self.outbox.root / f"{job.round_id}-{entry.folder}").exists()

    def _deidentifier(self) -> Deidentifier:
        return deidentifier_from_settings(self._settings)

    @staticmethod
    def _keep_processed(job: Round, processed: Path) -> None:
        target = processed / job.round_id
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(job.instances_dir, target)


def _manifest(job: Round) -> OutputManifest:
    path = job.output_dir / OUTPUT_MANIFEST
    return (
        OutputManifest.from_json(json.loads(path.read_text()))
        if path.exists()
        else OutputManifest()
    )


def _deidentifies(entry: OutputEntry) -> bool:
    destination = entry.destination
    return isinstance(destination, DicomDestination | FileDestination) and destination.deidentify


def _staged_entry(entry: OutputEntry, staged: DeidentifiedFolder) -> OutputEntry:
    """The output entry of the de-identified copy: its files, and for a folder the
    layout by pseudonymous UIDs (no original UID becomes a path)."""
    destination = entry.destination
    if isinstance(destination, FileDestination):
        destination = replace(destination, layout=dict(staged.layout))
    return OutputEntry(destination, entry.folder, staged.files)
