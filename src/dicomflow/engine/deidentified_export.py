"""De-identified copies of results, made once by the export stage before the outbox.

A de-identified output (``DicomOutput``/``FileOutput`` with ``deidentify``, an endpoint
``AE@host:port?deid``, a registry service with ``"deidentify": true``) has its Part-10
files de-identified here, with the node's de-identifier
(:func:`dicomflow.engine.deidentification.deidentifier_from_settings`), into a staged
folder beside the originals; only that folder enters the outbox. The outbox and its
retries send those bytes as they are: an instance is never de-identified twice (its
pseudonyms would be pseudonyms of pseudonyms). The originals stay with the round until
it is finished, so a restart before then stages the copies again from the originals
(the same key gives the same bytes).

An instance that is refused (burned-in annotation without a pixel-cleaning rule) or
cannot be de-identified stops the whole folder: :class:`~dicomflow.errors.DeidError`
names its SOP class and why, never an identifying value.
"""

import io
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID

from dicomflow.dicom.deid import Deidentifier, DeidIdentity
from dicomflow.dicom.deid.deidentifier import BURNED_IN_SOP_CLASSES
from dicomflow.dicom.keys import instance_file_name, shorten, uid_name
from dicomflow.durable import fsync_directory, make_private_directory, write_durably
from dicomflow.errors import DeidConfigError, DeidError, DeidRefusedError, InvalidKeyError

logger = logging.getLogger(__name__)

STAGED_SUFFIX = ".deid"


@dataclass(frozen=True)
class DeidentifiedFolder:
    """A staged folder of de-identified files: their names (pseudonymous SOP Instance
    UIDs) and, for a folder destination, each one's ``study/series/instance.dcm``."""

    folder: Path
    files: tuple[str, ...]
    layout: dict[str, str]


def staged_folder(source: Path) -> Path:
    """Where the de-identified copy of ``source`` is staged (beside it)."""
    return source.with_name(f"{source.name}{STAGED_SUFFIX}")


def deidentify_folder(source: Path, deidentifier: Deidentifier) -> DeidentifiedFolder:
    """De-identify every ``*.dcm`` of ``source`` into :func:`staged_folder` (made anew,
    0700, written durably); ``source`` is left as it was.

    Raises:
        DeidError: an instance was refused (:class:`DeidRefusedError`) or could not be
            de-identified; nothing is staged.
    """
    target = staged_folder(source)
    partial = target.with_name(f"{target.name}.partial")
    for leftover in (target, partial):  # an earlier attempt's, from the originals too
        shutil.rmtree(leftover, ignore_errors=True)
    make_private_directory(partial)
    files: list[str] = []
    layout: dict[str, str] = {}
    try:
        for path in sorted(source.glob("*.dcm")):
            name, relative = _write_deidentified(path, partial, deidentifier)
            files.append(name)
            layout[name] = relative
    except DeidError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_directory(partial)
    os.replace(partial, target)
    return DeidentifiedFolder(target, tuple(files), layout)


def _write_deidentified(path: Path, folder: Path, deidentifier: Deidentifier) -> tuple[str, str]:
    """Write the de-identified copy of ``path`` into ``folder``; return its file name and
    its pseudonymous ``study/series/instance.dcm``."""
    data = path.read_bytes()
    try:
        deidentified, identity = deidentifier.deidentify_bytes(data)
        name, relative = _names(identity)
    except DeidError as error:
        instance = describe_instance(data)
        named = type(error)(f"{instance}: {error}")
        named.add_note(instance)  # what log_refusal shows of an error it cannot vouch for
        raise named from None
    write_durably(folder / name, deidentified)
    return name, relative


def _names(identity: DeidIdentity) -> tuple[str, str]:
    try:
        name = instance_file_name(identity.sop_instance_uid)
        study = uid_name(identity.study_uid, "StudyInstanceUID")
        series = uid_name(identity.series_uid, "SeriesInstanceUID")
    except InvalidKeyError as error:
        raise DeidError(f"cannot be laid out after de-identification: {error}") from None
    return name, f"{study}/{series}/{name}"


def describe_instance(data: bytes) -> str:
    """``instance of SOP class 1.2.840... (Secondary Capture Image Storage)``: what a log
    line may say about an instance (its SOP class is not identifying)."""
    try:
        dataset = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPClassUID"])
        sop_class = str(dataset.get("SOPClassUID", "") or "")
    except Exception:  # pydicom raises many types on malformed input
        sop_class = ""
    if not sop_class:
        return "instance of an unknown SOP class"
    name = BURNED_IN_SOP_CLASSES.get(sop_class) or UID(sop_class).name
    shown = shorten(sop_class, 64)
    return f"instance of SOP class {shown}" + (f" ({name})" if name != sop_class else "")


def log_refusal(where: str, error: DeidError) -> None:
    """The log line of an export stopped by ``error``: :func:`shown_reason`."""
    logger.error("%s: de-identified export stopped: %s", where, shown_reason(error))


def shown_reason(error: DeidError) -> str:
    """What a log line may say of ``error``: the instance's SOP class and the reason. A
    refusal's reason (or a setting's error) is dicomflow's own text; another failure's may
    quote a value of the instance, so then only which instance failed is said (the full
    text is kept in the error of the round, beside its inputs)."""
    if isinstance(error, DeidRefusedError | DeidConfigError):
        return str(error)
    instance = (getattr(error, "__notes__", None) or ["an instance"])[0]
    return f"{instance} could not be de-identified ({type(error).__name__})"
