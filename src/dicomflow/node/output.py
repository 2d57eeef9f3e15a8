"""What ``process()`` may return, and how results are written by the worker.

``process()`` returns either datasets (sent to the pipeline's ``endpoints``),
``None``, or one or more :class:`PipelineOutput` objects:

- :class:`DicomOutput` ``([(Address, datasets), ...], ae_title)`` — C-STORE to those peers;
- :class:`FileOutput` ``([(Path, datasets), ...], saving_function)`` — Part-10 files
  under those folders, by default as ``{StudyInstanceUID}/{SeriesInstanceUID}/
  {SOPInstanceUID}.dcm`` (each UID checked against the DICOM UID grammar first);
- :class:`ArchiveOutput` ``(datastore, datasets)`` — into a cloud-optimized DICOM archive;
- :class:`MultiOutput` ``([output, ...])`` — several of these;
- :class:`NoOutput` ``()`` — nothing.

The built-in outputs are durable: the worker writes every dataset to the
round's ``output/`` folder with a manifest; once the round succeeded, the node
moves DICOM and default file outputs to the outbox (from where they are sent,
with retries) and archive outputs to the archive outbox. Nothing leaves the
node unless processing succeeded.

A user subclass of :class:`PipelineOutput` overriding :meth:`PipelineOutput.send`
(and a :class:`FileOutput` with a saving function of its own, other than
``save_dicom``) is sent by the worker itself, after ``process()`` returned:
``send()`` returning false or raising fails the round, which keeps its inputs
(:func:`send_custom`).
Calling ``send()`` directly sends at once, without the outbox.

``DicomOutput(..., deidentify=True)``, ``FileOutput(..., deidentify=True)`` and an
endpoint ``Address(..., deidentify=True)`` (``AE@host:port?deid``) mark results to be
de-identified with the node's ``deid_*`` settings. The node de-identifies them once, in
its export stage, before they enter the outbox (see :mod:`dicomflow.engine.export`), so
their ``send()`` refuses to send them itself.
"""

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydicom import Dataset

from dicomflow.address import Address, valid_ae_title
from dicomflow.destinations import (
    OUTPUT_MANIFEST,
    ArchiveDestination,
    Destination,
    DicomDestination,
    FileDestination,
    OutputEntry,
    OutputManifest,
)
from dicomflow.dicom.files import save_dicom, uid_layout
from dicomflow.dicom.keys import instance_file_name, value_key
from dicomflow.durable import write_durably
from dicomflow.errors import CouldNotCompleteDIMSEMessage, ProcessingError
from dicomflow.net.images import send_images

logger = logging.getLogger(__name__)


class PipelineOutput(ABC):
    """Base class of the outputs ``process()`` may return: ``output`` is a list of
    ``(destination, payload)`` pairs; :meth:`send` exports them all."""

    output: list[tuple[Any, Any]]

    def __init__(self, output: Sequence[tuple[Any, Any]]) -> None:
        self.output = list(output)

    @abstractmethod
    def send(self) -> bool:
        """Export everything this output holds; return whether it all succeeded."""

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        yield from self.output

    def destinations(self) -> list[tuple[Destination, Iterable[Dataset]]]:
        """``(destination, datasets)`` pairs the node exports durably after the round.

        Only the built-in outputs have them; an output without is sent by the worker.
        """
        raise NotImplementedError(f"{type(self).__name__} is sent by its send().")


class DicomOutput(PipelineOutput):
    """Send datasets to DICOM peers as ``ae_title`` (the node's AE title if None):
    ``DicomOutput([(Address(...), datasets)], "MY_AE")``; ``deidentify=True``: the node
    de-identifies them before it sends them (to every peer of this output)."""

    output: list[tuple[Address, Iterable[Dataset]]]

    def __init__(
        self,
        output: Sequence[tuple[Address, Iterable[Dataset]]],
        ae_title: str | None = None,
        *,
        deidentify: bool = False,
    ) -> None:
        super().__init__(output)
        self.ae_title = ae_title
        self.deidentify = deidentify

    def send(self) -> bool:
        if self.deidentify or any(address.deidentify for address, _ in self):
            _refuse_direct_send(self)
        success = True
        for address, datasets in self:
            try:
                send_images(self.ae_title or "DICOMFLOW", address, list(datasets))
            except CouldNotCompleteDIMSEMessage as exc:
                logger.error("Could not send the images to %s: %s", address.ae_title, exc)
                success = False
        return success

    def destinations(self) -> list[tuple[Destination, Iterable[Dataset]]]:
        for address, _ in self:
            address.validate()  # a bad address fails the round, naming the field
        if self.ae_title is not None and not valid_ae_title(self.ae_title):
            raise ValueError(
                f'DicomOutput AE title "{self.ae_title}" must be 1-16 printable ASCII'
                " characters without backslash."
            )
        return [
            (_dicom_destination(address, self.ae_title, self.deidentify), data)
            for address, data in self
        ]


def save_dataset(path: Path | str, dataset: Dataset) -> None:
    """Save ``dataset`` as ``path/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm``.

    Raises:
        InvalidKeyError: if one of the UIDs is not a valid DICOM UID (no such path is made).
    """
    save_dicom(Path(path) / uid_layout(dataset), dataset)


class FileOutput(PipelineOutput):
    """Write datasets as Part-10 files: ``FileOutput([(Path("out"), datasets)])``;
    ``saving_function(path, dataset)`` does the writing (default :func:`save_dataset`);
    ``deidentify=True``: the node writes them de-identified, laid out by their pseudonymous
    UIDs (only with the default saving function, which the node carries out itself)."""

    output: list[tuple[Path, Iterable[Dataset]]]

    def __init__(
        self,
        output: Sequence[tuple[Path | str, Iterable[Dataset]]],
        saving_function: Callable[[Path, Dataset], None] = save_dataset,
        *,
        deidentify: bool = False,
    ) -> None:
        super().__init__([(Path(path), datasets) for path, datasets in output])
        self.saving_function = saving_function
        self.deidentify = deidentify
        if deidentify and saving_function not in DEFAULT_SAVING:
            raise ValueError(
                "FileOutput(deidentify=True) writes with the default saving function only:"
                " the node de-identifies the files it writes, not what"
                f" {getattr(saving_function, '__qualname__', saving_function)!r} writes."
            )

    def send(self) -> bool:
        if self.deidentify:
            _refuse_direct_send(self)
        for path, datasets in self:
            for dataset in datasets:
                self.saving_function(path, dataset)
        return True

    def destinations(self) -> list[tuple[Destination, Iterable[Dataset]]]:
        return [
            (FileDestination(str(path.resolve()), deidentify=self.deidentify), data)
            for path, data in self
        ]


def _refuse_direct_send(output: PipelineOutput) -> None:
    """De-identified outputs are exported by the node, with its settings and key."""
    raise ProcessingError(
        f"{type(output).__name__} with deidentify is de-identified and sent by the node once"
        " process() returned it; its send() would send the originals."
    )


class ArchiveOutput(PipelineOutput):
    """Append datasets to a cloud-optimized DICOM datastore (a folder or fsspec URL):
    ``ArchiveOutput("s3://bucket/archive", datasets)``. Only the node archives it."""

    def __init__(self, datastore: str, datasets: Iterable[Dataset] = ()) -> None:
        super().__init__([(datastore, datasets)])
        self.datastore = datastore
        self.datasets = datasets

    def send(self) -> bool:
        raise NotImplementedError(
            "ArchiveOutput is archived by the node once process() returned it; "
            "it cannot be sent by itself."
        )

    def destinations(self) -> list[tuple[Destination, Iterable[Dataset]]]:
        return [(ArchiveDestination(self.datastore), self.datasets)]


class MultiOutput(PipelineOutput):
    """Several outputs: ``MultiOutput([DicomOutput(...), FileOutput(...)])``."""

    def __init__(self, outputs: Iterable[PipelineOutput]) -> None:
        super().__init__([])
        self.outputs = list(outputs)

    def send(self) -> bool:
        success = True
        for output in self.outputs:
            success &= bool(output.send())
        return success


class NoOutput(PipelineOutput):
    """Produce nothing."""

    def __init__(self) -> None:
        super().__init__([])

    def send(self) -> bool:
        return True

    def destinations(self) -> list[tuple[Destination, Iterable[Dataset]]]:
        return []


BUILT_IN = (DicomOutput, FileOutput, ArchiveOutput, MultiOutput, NoOutput)
DEFAULT_SAVING = (save_dataset, save_dicom)
"""Saving functions that give the default layout for the folders of a FileOutput
(``save_dicom`` into a folder saves there as :func:`save_dataset` does): the node
writes those outputs through the outbox."""


def normalise(result: Any, endpoints: Sequence[Address], ae: str) -> list[PipelineOutput]:
    """Turn whatever ``process()`` returned into a flat list of outputs."""
    if result is None:
        return []
    if isinstance(result, PipelineOutput):
        return _flatten([result])
    if isinstance(result, Dataset):
        result = [result]
    items = list(result)
    if all(isinstance(item, PipelineOutput) for item in items):
        return _flatten(items)
    if all(isinstance(item, Dataset) for item in items):
        return [DicomOutput([(address, items) for address in endpoints], ae)]
    raise TypeError(
        "process() must return datasets, PipelineOutput objects or None; got a "
        f"{type(result).__name__} of {sorted({type(i).__name__ for i in items})}."
    )


def _flatten(outputs: Iterable[PipelineOutput]) -> list[PipelineOutput]:
    flat: list[PipelineOutput] = []
    for output in outputs:
        if isinstance(output, MultiOutput) and _send_of(output) is MultiOutput:
            flat.extend(_flatten(output.outputs))
        else:
            flat.append(output)
    return flat


def _send_of(output: PipelineOutput) -> type:
    """The class whose ``send()`` an output uses."""
    return next(cls for cls in type(output).__mro__ if "send" in vars(cls))


def is_durable(output: PipelineOutput) -> bool:
    """Tell whether the node exports ``output`` (a built-in one with its own ``send()``
    and, for files, the default saving function), rather than its ``send()``."""
    if _send_of(output) not in BUILT_IN:
        return False
    return not isinstance(output, FileOutput) or output.saving_function in DEFAULT_SAVING


def send_custom(outputs: Iterable[PipelineOutput], round_id: str) -> None:
    """Call ``send()`` of each output the node does not export itself.

    Raises:
        ProcessingError: if one returned false or raised (the round fails, keeping its
            inputs); the ones after it are not sent.
    """
    for output in outputs:
        if is_durable(output):
            continue
        name = type(output).__qualname__
        try:
            sent = output.send()
        except Exception as exc:
            raise ProcessingError(
                f"Round {round_id}: {name}.send() raised {type(exc).__name__}: {exc}"
            ) from exc
        if not sent:
            raise ProcessingError(f"Round {round_id}: {name}.send() returned {sent!r}.")
        logger.info("round %s: %s.send() succeeded", round_id, name)


def write_outputs(outputs: list[PipelineOutput], directory: Path) -> dict[str, Any]:
    """Write every dataset of the durable outputs under ``directory`` and a manifest;
    return the manifest."""
    entries = []
    for index, output in enumerate(o for o in outputs if is_durable(o)):
        for number, (destination, datasets) in enumerate(output.destinations()):
            folder = directory / f"{index:03d}-{number:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            entries.append(_write_entry(destination, datasets, folder))
    manifest = OutputManifest(tuple(entries)).to_json()
    directory.mkdir(parents=True, exist_ok=True)
    write_durably(directory / OUTPUT_MANIFEST, json.dumps(manifest, indent=2).encode())
    return manifest


def _write_entry(
    destination: Destination, datasets: Iterable[Dataset], folder: Path
) -> OutputEntry:
    files: list[str] = []
    layout: dict[str, str] = {}
    by_uid = isinstance(destination, FileDestination)
    for dataset in datasets:
        if by_uid:  # checked before anything is written
            layout[instance_file_name(str(dataset.SOPInstanceUID))] = str(uid_layout(dataset))
        name = instance_file_name(str(dataset.SOPInstanceUID))
        save_dicom(folder / name, dataset)
        files.append(name)
    if isinstance(destination, FileDestination):
        destination = replace(destination, layout=layout)
    return OutputEntry(destination, folder.name, tuple(files))


def _dicom_destination(
    address: Address, ae_title: str | None, deidentify: bool = False
) -> DicomDestination:
    key = value_key(f"{address.ip}:{address.port}:{address.ae_title}")[:12]
    return DicomDestination(
        address.ip,
        address.port,
        address.ae_title,
        ae_title,
        key,
        tls=address.tls,
        deidentify=deidentify or address.deidentify,
    )
