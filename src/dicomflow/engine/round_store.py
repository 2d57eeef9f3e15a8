"""Rounds: one complete set of a patient's instances, taken from the spool for processing.

A round is created by moving the instances out of the spool into
``rounds/{round_id}/instances/`` under a manifest naming which instances
belong to which input. The round id is a digest of the pipeline, the patient
key and the instance set, so the same set is never processed twice. The move is
made crash-safe by building the round in ``rounds/{round_id}.partial`` and
renaming it; a partial round found at start-up is moved back into the spool.

A round that fails is moved to ``failed/{round_id}/`` with ``error.json`` and
the captured process log; its instances are kept there, never deleted.
"""

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dicomflow.dicom.keys import instance_file_name
from dicomflow.durable import fsync_directory, make_private_directory, write_durably
from dicomflow.engine.spool import Spool

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PARTIAL = ".partial"


@dataclass
class Round:
    """A patient's instance set handed to processing."""

    round_id: str
    pipeline: str
    patient_key: str
    inputs: dict[str, list[str]]
    directory: Path
    created: float = field(default_factory=time.time)  # when its inputs were complete
    attempts: int = 0
    processed_at: float | None = None  # when its job ended (epoch s), once it has
    caller: list[str] | None = None  # AE title and IP of the peer that completed it

    @property
    def instances_dir(self) -> Path:
        return self.directory / "instances"

    @property
    def output_dir(self) -> Path:
        return self.directory / "output"

    @property
    def work_dir(self) -> Path:
        return self.directory / "work"

    @property
    def log_file(self) -> Path:
        return self.directory / "process.log"

    def input_paths(self) -> dict[str, list[tuple[str, Path]]]:
        """Per input, the ``(sop_instance_uid, path)`` pairs of its instances."""
        return {
            name: [(uid, self.instances_dir / instance_file_name(uid)) for uid in uids]
            for name, uids in self.inputs.items()
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["directory"] = str(self.directory)
        return data


def round_id_for(
    pipeline: str, patient_key: str, inputs: dict[str, list[str]], created_ns: int
) -> str:
    """A digest of the pipeline, the patient, the exact instance set and the creation time
    (the same instances sent again later make a new round)."""
    digest = hashlib.sha256(f"{pipeline}\n{patient_key}\n{created_ns}\n".encode())
    for name in sorted(inputs):
        digest.update(f"{name}:{','.join(sorted(inputs[name]))}\n".encode())
    return digest.hexdigest()[:32]


class RoundStore:
    """The ``rounds/`` and ``failed/`` areas of the data directory."""

    def __init__(self, root: Path, spool: Spool) -> None:
        self.rounds = root / "rounds"
        self.failed = root / "failed"
        self.spool = spool
        for directory in (self.rounds, self.failed):
            make_private_directory(directory)

    def create(
        self,
        pipeline: str,
        patient_key: str,
        members: dict[str, dict[str, Path]],
        caller: tuple[str, str] | None = None,
    ) -> Round:
        """Move the instances of ``members`` (input -> uid -> spool path) into a new round;
        ``caller`` is the AE title and IP of the peer whose association completed it."""
        self.spool.settle()
        inputs = {name: sorted(paths) for name, paths in members.items()}
        round_id = round_id_for(pipeline, patient_key, inputs, time.time_ns())
        final = self.rounds / round_id
        partial = self.rounds / f"{round_id}{PARTIAL}"
        job = Round(round_id, pipeline, patient_key, inputs, final)
        job.caller = list(caller) if caller else None
        make_private_directory(partial / "instances")
        _write_manifest(partial, job)
        missing = self._move_members(members, partial / "instances")
        if missing:
            job.inputs = {
                name: [u for u in uids if u not in missing] for name, uids in inputs.items()
            }
            _write_manifest(partial, job)
        fsync_directory(partial / "instances")
        os.replace(partial, final)
        fsync_directory(self.rounds)
        self.spool.forget_empty(patient_key)
        return job

    def _move_members(self, members: dict[str, dict[str, Path]], target: Path) -> set[str]:
        """Move the instance files; return the UIDs whose file had vanished."""
        missing = set()
        for paths in members.values():
            for uid, path in paths.items():
                destination = target / path.name
                if destination.exists():
                    continue
                try:
                    os.replace(path, destination)
                except FileNotFoundError:
                    logger.warning("instance %s vanished from the spool before its round", uid)
                    missing.add(uid)
        return missing

    def load(self, directory: Path) -> Round:
        data = json.loads((directory / MANIFEST).read_text())
        data["directory"] = directory
        return Round(**data)

    def pending(self) -> list[Round]:
        """Rounds that were created and not finished (to resume after a restart)."""
        found = []
        for directory in sorted(self.rounds.iterdir()):
            if directory.is_dir() and not directory.name.endswith(PARTIAL):
                try:
                    found.append(self.load(directory))
                except (OSError, ValueError, TypeError):
                    logger.exception("round %s: unreadable manifest; left in place", directory.name)
        return sorted(found, key=lambda job: job.created)

    def recover_partial(self) -> int:
        """Move the instances of half-created rounds back into the spool; return how many."""
        moved = 0
        for partial in self.rounds.glob(f"*{PARTIAL}"):
            job = self.load(partial)
            target = self.spool.incoming / job.patient_key
            make_private_directory(target)
            for path in (partial / "instances").glob("*.dcm"):
                os.replace(path, target / path.name)
                moved += 1
            shutil.rmtree(partial)
        return moved

    def processed(self, job: Round, ended_at: float | None) -> None:
        """Record in the round's manifest when its job ended (for the export latency,
        also after a restart)."""
        job.processed_at = time.time() if ended_at is None else ended_at
        _write_manifest(job.directory, job)

    def finish(self, job: Round) -> None:
        """Remove a round whose processing succeeded (its inputs are consumed)."""
        shutil.rmtree(job.directory, ignore_errors=True)

    def fail(self, job: Round, error: str) -> Path:
        """Move a failed round to ``failed/`` with its error; return the new directory."""
        shutil.rmtree(job.work_dir, ignore_errors=True)
        shutil.rmtree(job.output_dir, ignore_errors=True)
        target = self.failed / job.round_id
        os.replace(job.directory, target)
        record = {"round_id": job.round_id, "error": error, "failed_at": time.time()}
        write_durably(target / "error.json", json.dumps(record, indent=2).encode())
        job.directory = target
        return target


def _write_manifest(directory: Path, job: Round) -> None:
    data = job.to_json()
    del data["directory"]
    write_durably(directory / MANIFEST, json.dumps(data, indent=2).encode())
