"""What ``process()`` may return, and how results are written by the worker.

``process()`` returns either datasets (sent to the pipeline's ``endpoints``),
``None``, or one or more :class:`PipelineOutput` objects:

- :class:`DicomOutput` ``([(Address, datasets), ...])`` — C-STORE to those peers;
- :class:`FileOutput` ``([(Path, datasets), ...])`` — Part-10 files in those folders;
- :class:`ArchiveOutput` ``(datastore, datasets)`` — into a cloud-optimized DICOM archive;
- :class:`NoOutput` ``()`` — nothing.

The worker writes every dataset to the round's ``output/`` folder with a
manifest; the node then moves DICOM outputs to the outbox (from where they are
sent, with retries) and file outputs to their folders. Nothing leaves the node
unless processing succeeded.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomflow.dicom.keys import instance_file_name, value_key
from dicomflow.net.address import Address
from dicomflow.node.spool import write_durably

OUTPUT_MANIFEST = "outputs.json"


class PipelineOutput:
    """Base class of the outputs ``process()`` may return."""

    def destinations(self) -> list[tuple[dict[str, Any], Iterable[Dataset]]]:
        """``(destination, datasets)`` pairs; a destination is a JSON-able dict."""
        raise NotImplementedError


@dataclass
class DicomOutput(PipelineOutput):
    """Send datasets to DICOM peers: ``DicomOutput([(Address(...), datasets)])``."""

    output: Sequence[tuple[Address, Iterable[Dataset]]] = field(default_factory=list)
    ae: str | None = None

    def destinations(self) -> list[tuple[dict[str, Any], Iterable[Dataset]]]:
        return [(_dicom_destination(address, self.ae), data) for address, data in self.output]


@dataclass
class FileOutput(PipelineOutput):
    """Write datasets as Part-10 files: ``FileOutput([(Path("out"), datasets)])``."""

    output: Sequence[tuple[Path | str, Iterable[Dataset]]] = field(default_factory=list)

    def destinations(self) -> list[tuple[dict[str, Any], Iterable[Dataset]]]:
        return [({"kind": "file", "path": str(Path(p).resolve())}, data) for p, data in self.output]


@dataclass
class ArchiveOutput(PipelineOutput):
    """Append datasets to a cloud-optimized DICOM datastore (a folder or fsspec URL):
    ``ArchiveOutput("s3://bucket/archive", datasets)``."""

    datastore: str
    datasets: Iterable[Dataset] = field(default_factory=list)

    def destinations(self) -> list[tuple[dict[str, Any], Iterable[Dataset]]]:
        return [({"kind": "archive", "datastore": self.datastore}, self.datasets)]


@dataclass
class NoOutput(PipelineOutput):
    """Produce nothing."""

    def destinations(self) -> list[tuple[dict[str, Any], Iterable[Dataset]]]:
        return []


def normalise(result: Any, endpoints: Sequence[Address], ae: str) -> list[PipelineOutput]:
    """Turn whatever ``process()`` returned into a list of outputs."""
    if result is None:
        return []
    if isinstance(result, PipelineOutput):
        return [result]
    if isinstance(result, Dataset):
        result = [result]
    items = list(result)
    if all(isinstance(item, PipelineOutput) for item in items):
        return items
    if all(isinstance(item, Dataset) for item in items):
        return [DicomOutput([(address, items) for address in endpoints], ae)]
    raise TypeError(
        "process() must return datasets, PipelineOutput objects or None; got a "
        f"{type(result).__name__} of {sorted({type(i).__name__ for i in items})}."
    )


def write_outputs(outputs: list[PipelineOutput], directory: Path) -> dict[str, Any]:
    """Write every dataset under ``directory`` and a manifest; return the manifest."""
    entries = []
    for index, output in enumerate(outputs):
        for number, (destination, datasets) in enumerate(output.destinations()):
            folder = directory / f"{index:03d}-{number:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            files = [_write_dataset(dataset, folder) for dataset in datasets]
            entries.append({**destination, "folder": folder.name, "files": files})
    manifest = {"outputs": entries}
    directory.mkdir(parents=True, exist_ok=True)
    write_durably(directory / OUTPUT_MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def _write_dataset(dataset: Dataset, folder: Path) -> str:
    meta = getattr(dataset, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        dataset.file_meta = meta if meta is not None else FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    name = instance_file_name(str(dataset.SOPInstanceUID))
    path = folder / name
    dataset.save_as(path, enforce_file_format=True)
    return name


def _dicom_destination(address: Address, ae: str | None) -> dict[str, Any]:
    return {
        "kind": "dicom",
        "ip": address.ip,
        "port": address.port,
        "ae_title": address.ae_title,
        "calling_ae_title": ae,
        "key": value_key(f"{address.ip}:{address.port}:{address.ae_title}")[:12],
    }
