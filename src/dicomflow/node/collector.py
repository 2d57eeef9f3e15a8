"""The collector: offers each instance to every input, per patient, and tells when a
patient's inputs are all complete."""

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag

from dicomflow.node.input import AbstractInput

logger = logging.getLogger(__name__)

Members = dict[str, dict[str, Path]]


class Collector:
    """In-memory state of the patients whose instances wait in the spool."""

    def __init__(self, inputs: dict[str, type[AbstractInput]]) -> None:
        self._inputs = inputs
        self._probes = {name: cls() for name, cls in inputs.items()}
        self._patients: dict[str, dict[str, AbstractInput]] = {}
        self._arrivals: dict[str, tuple[float, float]] = {}  # patient -> (first, last)
        self._lock = threading.RLock()

    def wanted_by(self, dataset: Dataset) -> list[str]:
        """Names of the inputs that accept ``dataset``."""
        return [name for name, probe in self._probes.items() if probe.accepts(dataset)]

    def add(
        self, patient_key: str, names: list[str], uid: str, header: Dataset, path: Path
    ) -> None:
        """Hold an instance in the named inputs of ``patient_key``."""
        with self._lock:
            inputs = self._patients.get(patient_key)
            if inputs is None:
                inputs = {name: cls() for name, cls in self._inputs.items()}
                self._patients[patient_key] = inputs
            for name in names:
                inputs[name].add_image(uid, header, path)
            now = time.time()
            first, _ = self._arrivals.get(patient_key, (now, now))
            self._arrivals[patient_key] = (first, now)

    def arrivals(self, patient_key: str) -> tuple[float, float] | None:
        """When the first and the last instance held for ``patient_key`` arrived (epoch s)."""
        with self._lock:
            return self._arrivals.get(patient_key)

    def patients(self) -> list[str]:
        with self._lock:
            return list(self._patients)

    def state(self, patient_key: str) -> dict[str, int]:
        """Number of instances per input of ``patient_key`` (empty if none)."""
        with self._lock:
            inputs = self._patients.get(patient_key, {})
            return {name: item.images for name, item in inputs.items()}

    def take_if_complete(self, patient_key: str) -> Members | None:
        """If every input of ``patient_key`` validates, forget them and return their
        instances (input -> uid -> path); otherwise return ``None``."""
        with self._lock:
            inputs = self._patients.get(patient_key)
            if inputs is None or not all(_validates(n, i, patient_key) for n, i in inputs.items()):
                return None
            del self._patients[patient_key]
            self._arrivals.pop(patient_key, None)
            return {name: dict(item.paths) for name, item in inputs.items()}

    def describe(self, patient_key: str) -> list["InputState"]:
        """What each input of ``patient_key`` holds and needs (read-only; empty if the
        patient is unknown). ``validate()`` is called safely: raising counts as not valid."""
        with self._lock:
            inputs = self._patients.get(patient_key, {})
            return [
                InputState(
                    name=name,
                    instances=item.images,
                    validates=_validates(name, item, patient_key),
                    required_tags=[_tag_name(tag) for tag in type(item).required_tags],
                    required_values={
                        _tag_name(k): str(v) for k, v in type(item).required_values.items()
                    },
                )
                for name, item in inputs.items()
            ]

    def headers(self, patient_key: str) -> list[Dataset]:
        """The headers (no pixel data) held for ``patient_key``, across its inputs."""
        with self._lock:
            inputs = self._patients.get(patient_key, {})
            found: dict[str, Dataset] = {}
            for item in inputs.values():
                found.update(item.data)
            return list(found.values())


def _validates(name: str, item: AbstractInput, patient_key: str) -> bool:
    try:
        return bool(item.validate())
    except Exception:
        logger.exception("patient %s: validate() of input %r raised", patient_key[:12], name)
        return False


def _tag_name(tag: object) -> str:
    """A required tag as people read it: its keyword, else ``(gggg,eeee)``."""
    if isinstance(tag, int):
        return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return str(tag)


@dataclass(frozen=True)
class InputState:
    """One input of one patient, as :meth:`Collector.describe` reports it."""

    name: str
    instances: int
    validates: bool
    required_tags: list[str] = field(default_factory=list)
    required_values: dict[str, str] = field(default_factory=dict)
