"""The round job: what a queue worker runs for one round.

The queue runs it isolated (own process group, captured output, timeout). It
works in the round's ``work/`` folder, reads the inputs from the round's
instance files (by reference: the round folder must be reachable at the same
path by the worker) and writes its results to the round's ``output/`` folder,
with a manifest; the node exports them once the job has finished. Outputs the
node does not export (a user's ``PipelineOutput.send()``) are sent by the job
after that; one returning false or raising fails the round. What the pipeline does
with the round is the pipeline's (``AbstractPipeline._run_round``, see
:class:`~dicomflow.engine.protocols.PipelineClass`); the job gives it a
:class:`RoundWork`.

With ``protected`` directories (the node's data directory, by default), the
job cannot write, move or delete anything beneath them but its round's
``work/`` and ``output/`` folders (:mod:`dicomflow.queue.landlock`): not the
journal, the spool, the queue, the logs, nor other rounds, nor its own inputs.
Its temporary files go to ``work/``.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomflow.address import Address
from dicomflow.engine.pipeline_ref import PipelineRef
from dicomflow.engine.protocols import PipelineClass
from dicomflow.errors import ProcessingError
from dicomflow.net.requestor import use_client_tls
from dicomflow.queue.landlock import protect_job
from dicomflow.tls import TLSFiles

logger = logging.getLogger(__name__)

PROCESS_ROUND_MODULE = "dicomflow.engine.round_job"
PROCESS_ROUND = f"{PROCESS_ROUND_MODULE}:process_round"


@dataclass(frozen=True)
class WorkerTask:
    """Everything the job needs, as JSON-able values."""

    pipeline: PipelineRef
    round_id: str
    patient_key: str
    inputs: dict[str, list[tuple[str, str]]]
    directory: str
    endpoints: tuple[Address, ...] = field(default_factory=tuple)
    ae_title: str = "DICOMFLOW"
    protected: tuple[str, ...] = ()
    caller: tuple[str, str] | None = None  # AE title and IP of the peer that completed it
    client_tls: TLSFiles | None = None  # the node's, for sends to TLS peers from the job

    def to_kwargs(self) -> dict[str, Any]:
        return {
            "pipeline": [self.pipeline.module, self.pipeline.qualname, self.pipeline.path],
            "round_id": self.round_id,
            "patient_key": self.patient_key,
            "inputs": {name: [list(pair) for pair in pairs] for name, pairs in self.inputs.items()},
            "directory": self.directory,
            "endpoints": [[a.ip, a.port, a.ae_title, a.tls, a.deidentify] for a in self.endpoints],
            "ae_title": self.ae_title,
            "protected": list(self.protected),
            "caller": list(self.caller) if self.caller else None,
            "client_tls": _tls_paths(self.client_tls),
        }

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> "WorkerTask":
        module, qualname, path = kwargs["pipeline"]
        return cls(
            pipeline=PipelineRef(module, qualname, path),
            round_id=kwargs["round_id"],
            patient_key=kwargs["patient_key"],
            inputs={name: [(u, p) for u, p in pairs] for name, pairs in kwargs["inputs"].items()},
            directory=kwargs["directory"],
            endpoints=tuple(_address(*values) for values in kwargs["endpoints"]),
            ae_title=kwargs["ae_title"],
            protected=tuple(kwargs.get("protected", ())),
            caller=_pair(kwargs.get("caller")),
            client_tls=_tls_files(kwargs.get("client_tls")),
        )


def _address(
    ip: str, port: int, ae_title: str, tls: bool = False, deidentify: bool = False
) -> Address:
    """An endpoint as a job's arguments carry it (without ``tls`` or ``deidentify`` from
    older versions)."""
    return Address(ip, port, ae_title, tls=bool(tls), deidentify=bool(deidentify))


def _tls_paths(files: TLSFiles | None) -> list[str | None] | None:
    if files is None:
        return None
    paths = (files.certificate, files.private_key, files.ca_certificates)
    return [None if path is None else str(path) for path in paths]


def _tls_files(value: Any) -> TLSFiles | None:
    if not value:
        return None
    certificate, key, ca = (None if path is None else Path(path) for path in value)
    return TLSFiles(certificate, key, ca)


def _pair(value: Any) -> tuple[str, str] | None:
    return None if not value else (str(value[0]), str(value[1]))


def process_round(**kwargs: Any) -> int:
    """The queue job of a round: run the pipeline's processor; return the dataset count."""
    task = WorkerTask.from_kwargs(kwargs)
    directory = Path(task.directory)
    if not directory.is_dir():
        raise ProcessingError(
            f'Round {task.round_id}: its folder "{directory}" does not exist on this worker'
            " (the round has ended, e.g. a queue restored from an older snapshot ran it"
            " again; or the data directory is not shared with this worker at that path)."
        )
    work = directory / "work"
    work.mkdir(exist_ok=True)
    os.chdir(work)
    if task.protected:
        _protect(task, work, directory / "output")
    if task.client_tls is not None:
        use_client_tls(task.client_tls)  # for DicomOutput.send() and send_images()
    pipeline_class: PipelineClass = task.pipeline.resolve()
    return pipeline_class._run_round(
        RoundWork(
            round_id=task.round_id,
            patient_key=task.patient_key,
            inputs={
                name: [(uid, Path(path)) for uid, path in pairs]
                for name, pairs in task.inputs.items()
            },
            work_dir=work,
            output_dir=directory / "output",
            endpoints=task.endpoints,
            ae_title=task.ae_title,
            caller=task.caller,
        )
    )


@dataclass(frozen=True)
class RoundWork:
    """What the pipeline is given to process a round (see
    :class:`~dicomflow.engine.protocols.RoundWork`)."""

    round_id: str
    patient_key: str
    inputs: dict[str, list[tuple[str, Path]]]
    work_dir: Path
    output_dir: Path
    endpoints: tuple[Address, ...]
    ae_title: str
    caller: tuple[str, str] | None


def _protect(task: WorkerTask, work: Path, output: Path) -> None:
    """From here on, write only to ``work`` (the working directory, where temporary files
    go) and ``output`` beneath the protected places."""
    output.mkdir(exist_ok=True)
    if protect_job([Path(path) for path in task.protected], [work, output]):
        logger.debug("round %s: writes beneath %s refused", task.round_id, task.protected)
