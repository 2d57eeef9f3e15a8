"""De-identify a tree of Part-10 files into a tree named by pseudonyms only.

Each instance is written to ``OUT/{patient}/{study}/{series}/{sop}.dcm``, every part a
pseudonym (or, under Retain UIDs, a UID checked by :mod:`dicomflow.dicom.keys`), never
a raw DICOM value or an input file name. Files are spread over worker processes; each
builds the same de-identifier from the same settings (the key is read in each), so the
pseudonyms do not depend on ``--jobs``.
"""

import logging
import multiprocessing
import os
import re
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path

from pydicom import Dataset, dcmread

from dicomflow.dicom.deid import Deidentifier, DeidIdentity
from dicomflow.dicom.keys import shorten, uid_name, value_key
from dicomflow.engine.deidentification import deidentifier_from_settings
from dicomflow.errors import DeidRefusedError, DicomflowError
from dicomflow.settings import NodeSettings

__all__ = [
    "Outcome",
    "Result",
    "Summary",
    "deidentify_file",
    "output_path",
    "quiet_pydicom",
    "run_batch",
]

_PATIENT_PSEUDONYM = re.compile(r"^[A-Z2-7]{16}$")


class Outcome(StrEnum):
    """What became of one input file."""

    WRITTEN = "written"
    REFUSED = "refused"  # burned-in annotation without a pixel-cleaning rule
    UNREADABLE = "unreadable"  # not a DICOM file pydicom can read
    FAILED = "failed"  # read, but not de-identified or not written


@dataclass(frozen=True)
class Result:
    """One input file's outcome (picklable: returned by a worker process)."""

    source: str
    outcome: Outcome
    reason: str = ""


@dataclass
class Summary:
    """Counts per outcome and the problems, in the order they were met."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    problems: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        self.counts[result.outcome] += 1
        if result.outcome is not Outcome.WRITTEN:
            self.problems.append(result)


def output_path(out: Path, identity: DeidIdentity) -> Path:
    """Where an instance goes: pseudonyms (or checked UIDs) only.

    Raises:
        InvalidKeyError: a UID kept by Retain UIDs is not a valid UID.
    """
    patient = identity.patient_id
    if not _PATIENT_PSEUDONYM.match(patient):
        patient = value_key(patient)
    study = uid_name(identity.study_uid, "StudyInstanceUID")
    series = uid_name(identity.series_uid, "SeriesInstanceUID")
    sop = uid_name(identity.sop_instance_uid, "SOPInstanceUID")
    return out / patient / study / series / f"{sop}.dcm"


def deidentify_file(settings: NodeSettings, out: Path, source: str) -> Result:
    """De-identify one file into ``out`` (runs in a worker process, or in this one)."""
    deidentifier = deidentifier_from_settings(settings)  # once per process
    try:
        dataset = dcmread(source)
    except Exception as error:  # pydicom raises many types on malformed input
        return Result(source, Outcome.UNREADABLE, _reason(error))
    if "SOPClassUID" not in dataset or "SOPInstanceUID" not in dataset:
        return Result(source, Outcome.UNREADABLE, "not a DICOM instance (no SOP Class or UID)")
    try:
        _write(deidentifier, dataset, out)
    except DeidRefusedError as error:
        return Result(source, Outcome.REFUSED, str(error))
    except (DicomflowError, OSError) as error:
        return Result(source, Outcome.FAILED, _reason(error))
    except Exception as error:  # a malformed element met while writing
        return Result(source, Outcome.FAILED, _reason(error))
    return Result(source, Outcome.WRITTEN)


def _write(deidentifier: Deidentifier, dataset: Dataset, out: Path) -> Path:
    """Check the path, de-identify, write atomically (two runs may meet on one path)."""
    target = output_path(out, deidentifier.identity(dataset))  # before anything is recorded
    deidentifier.deidentify(dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        dataset.save_as(temporary, enforce_file_format=True)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def _reason(error: BaseException) -> str:
    text = str(error) if isinstance(error, DicomflowError) else f"{type(error).__name__}: {error}"
    return shorten(text, 300)


def run_batch(
    settings: NodeSettings,
    sources: list[Path],
    out: Path,
    jobs: int,
    advance: Callable[[Result], None],
) -> Summary:
    """De-identify ``sources`` into ``out`` over ``jobs`` processes; ``advance`` is told
    each result as it comes."""
    quiet_pydicom()
    summary = Summary()
    work = partial(deidentify_file, settings, out)
    results = map(work, map(str, sources)) if jobs <= 1 else _in_pool(work, sources, jobs)
    for result in results:
        summary.add(result)
        advance(result)
    return summary


def quiet_pydicom() -> None:
    """pydicom's warnings about odd values quote the values, identifiers among them:
    not on the console of a de-identification (the outcome says what failed)."""
    warnings.filterwarnings("ignore", module=r"pydicom\.")
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def _in_pool(work: Callable[[str], Result], sources: list[Path], jobs: int) -> Iterator[Result]:
    """Results in the order they finish. The workers are forked from a fresh fork server
    (this process has threads: the progress bar's) that imported this module once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "deid.dicom.parser", "deid.config"])
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=quiet_pydicom) as pool:
        futures: dict[Future[Result], str] = {pool.submit(work, str(s)): str(s) for s in sources}
        try:
            for future in as_completed(futures):
                yield _result(future, futures[future])
        except BaseException:  # Ctrl-C: the files not started yet are not started
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _result(future: "Future[Result]", source: str) -> Result:
    try:
        return future.result()
    except Exception as error:  # a worker died (e.g. out of memory)
        return Result(source, Outcome.FAILED, _reason(error))
