"""Where a round's results go, as typed records, and their JSON on disk.

A pipeline's built-in outputs name their destinations (:mod:`dicomflow.node.output`);
the worker writes each output's datasets into a folder of the round's ``output/`` with
a manifest (:data:`OUTPUT_MANIFEST`, one :class:`OutputEntry` per folder); the node then
moves each folder to the outbox with ``destination.json`` (an :class:`OutboxDestination`)
or to the archive outbox. The JSON is the one earlier versions wrote, key for key, so
either side reads what the other (or an older version) wrote.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

OUTPUT_MANIFEST = "outputs.json"


class DestinationKind(StrEnum):
    """How results reach their destination."""

    DICOM = "dicom"  # C-STORE to a peer
    FILE = "file"  # Part-10 files written into a folder
    ARCHIVE = "archive"  # appended to a cloud-optimized DICOM datastore


@dataclass(frozen=True)
class DicomDestination:
    """A DICOM peer; ``calling_ae_title`` is the AE title to send as (None: the node's);
    ``tls``: it speaks DICOM TLS (``"tls": true`` on disk; plain when absent, as older
    versions wrote it); ``deidentify``: what is sent there is de-identified by the export
    stage before it enters the outbox (``"deidentify": true`` on disk; absent: originals).

    ``key`` (a digest of the address) is set on the destinations of a pipeline's outputs;
    those carry ``calling_ae_title`` and ``key`` on disk, a service's exports neither."""

    ip: str
    port: int
    ae_title: str
    calling_ae_title: str | None = None
    key: str = ""
    tls: bool = False
    deidentify: bool = False

    kind = DestinationKind.DICOM

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind.value,
            "ip": self.ip,
            "port": self.port,
            "ae_title": self.ae_title,
        }
        if self.key:
            data |= {"calling_ae_title": self.calling_ae_title, "key": self.key}
        if self.tls:
            data["tls"] = True
        if self.deidentify:
            data["deidentify"] = True
        return data

    def lane(self) -> str:
        """The destination as one string: items with the same one share an outbox lane."""
        return f"{self.describe()} {self.calling_ae_title or ''}"

    def describe(self) -> str:
        text = f"{self.ae_title}@{self.ip}:{self.port}"
        flags = [name for name, on in (("tls", self.tls), ("deid", self.deidentify)) if on]
        return f"{text}?{'&'.join(flags)}" if flags else text


@dataclass(frozen=True)
class FileDestination:
    """A folder the files are copied into; ``layout`` maps a file's name to its path
    beneath the folder (``study/series/instance.dcm``) once the files are written; before,
    it is None: laid out by UID (``"uid"`` on disk). ``deidentify``: the files are
    de-identified (and laid out by their pseudonymous UIDs) before they enter the outbox."""

    path: str
    layout: Mapping[str, str] | None = None
    deidentify: bool = False

    kind = DestinationKind.FILE

    def to_json(self) -> dict[str, Any]:
        layout = "uid" if self.layout is None else dict(self.layout)
        data: dict[str, Any] = {"kind": self.kind.value, "path": self.path, "layout": layout}
        if self.deidentify:
            data["deidentify"] = True
        return data

    def lane(self) -> str:
        return f"folder {self.path}"

    def describe(self) -> str:
        return f"folder {self.path}" + (" (de-identified)" if self.deidentify else "")


@dataclass(frozen=True)
class ArchiveDestination:
    """A cloud-optimized DICOM datastore (a folder or an fsspec URL)."""

    datastore: str

    kind = DestinationKind.ARCHIVE

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "datastore": self.datastore}


Destination = DicomDestination | FileDestination | ArchiveDestination
Sendable = DicomDestination | FileDestination
"""What the outbox delivers (archive outputs go to the archive outbox)."""


def destination_from_json(data: object) -> Destination:
    """The destination ``data`` (a decoded JSON object) describes.

    Raises:
        ValueError: if it is not one (unknown kind, missing or wrong fields).
    """
    if not isinstance(data, dict):
        raise ValueError(f"A destination is a JSON object, not {type(data).__name__}.")
    try:
        kind = DestinationKind(data.get("kind", DestinationKind.DICOM))
        deidentify = _flag(data.get("deidentify", False), "deidentify")
        if kind is DestinationKind.FILE:
            layout = data.get("layout")
            if layout == "uid":
                return FileDestination(str(data["path"]), deidentify=deidentify)
            return FileDestination(
                str(data["path"]), dict(layout) if layout else {}, deidentify=deidentify
            )
        if kind is DestinationKind.ARCHIVE:
            return ArchiveDestination(str(data["datastore"]))
        calling = data.get("calling_ae_title")
        return DicomDestination(
            str(data["ip"]),
            int(data["port"]),
            str(data["ae_title"]),
            None if calling is None else str(calling),
            str(data.get("key") or ""),
            _flag(data.get("tls", False), "tls"),
            deidentify,
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"Not a destination: {exc!r} in {data!r}") from exc


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, not {value!r}")
    return value


@dataclass(frozen=True)
class OutputEntry:
    """One folder of a round's ``output/``: the files written for one destination."""

    destination: Destination
    folder: str
    files: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.destination.to_json(), "folder": self.folder, "files": list(self.files)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "OutputEntry":
        try:
            files = tuple(str(name) for name in data.get("files", ()))
            return cls(destination_from_json(data), str(data["folder"]), files)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"Not an output entry: {exc!r}") from exc


@dataclass(frozen=True)
class OutputManifest:
    """A round's :data:`OUTPUT_MANIFEST`: what the worker wrote, per destination."""

    outputs: tuple[OutputEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"outputs": [entry.to_json() for entry in self.outputs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "OutputManifest":
        return cls(tuple(OutputEntry.from_json(entry) for entry in data.get("outputs", ())))


@dataclass(frozen=True)
class OutboxDestination:
    """An outbox item's ``destination.json``: where it goes, which output folder of its
    round it was (a round's outputs), when its round was processed and, for a service's
    results, its stage kind (for the latency metrics)."""

    destination: Sendable
    processed_at: float | None = None
    stage_kind: str | None = None
    folder: str | None = None
    files: tuple[str, ...] = ()

    @property
    def kind(self) -> DestinationKind:
        return self.destination.kind

    def to_json(self) -> dict[str, Any]:
        data = self.destination.to_json()
        if self.folder is not None:
            data |= {"folder": self.folder, "files": list(self.files)}
        data["processed_at"] = self.processed_at
        if self.stage_kind is not None:
            data["stage_kind"] = self.stage_kind
        return data

    @classmethod
    def from_json(cls, data: object) -> "OutboxDestination":
        """Read ``destination.json`` as any version wrote it.

        Raises:
            ValueError: if it describes no destination the outbox delivers to.
        """
        destination = destination_from_json(data)
        assert isinstance(data, dict)  # checked by destination_from_json
        if isinstance(destination, ArchiveDestination):
            raise ValueError("An archive output is not delivered by the outbox.")
        processed_at = data.get("processed_at")
        folder = data.get("folder")
        stage_kind = data.get("stage_kind")
        return cls(
            destination,
            None if processed_at is None else float(processed_at),
            None if stage_kind is None else str(stage_kind),
            None if folder is None else str(folder),
            tuple(str(name) for name in data.get("files", ())),
        )
