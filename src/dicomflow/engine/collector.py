"""The collector: offers each instance to every input, per patient, and tells when a
patient's inputs are all complete."""

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.datadict import keyword_for_tag

from dicomflow.engine.protocols import InputClass, InputObject
from dicomflow.errors import InvalidDataset

logger = logging.getLogger(__name__)

Members = dict[str, dict[str, Path]]
_MAX_CHOICES = 4096


class Collector:
    """In-memory state of the patients whose instances wait in the spool.

    Each patient has one input object per declared input, fed through the input's
    ``add_image`` (as headers, see :meth:`add`). An instance an input refuses for
    reasons of state (``enforce_single_series``, a custom ``add_image``) stays in the
    spool and is offered again to the patient's fresh inputs once a round has taken
    the others, as it would be after a restart.
    """

    def __init__(self, inputs: Mapping[str, Any], options: Any = None) -> None:
        """``inputs``: name -> input class (:class:`~dicomflow.engine.protocols.InputClass`);
        ``options``: a dataclass each patient's inputs get a copy of (None: their default)."""
        self._inputs: Mapping[str, InputClass] = inputs
        self._options = options
        self._patients: dict[str, dict[str, InputObject]] = {}
        self._arrivals: dict[str, tuple[float, float]] = {}  # patient -> (first, last)
        self._refused: dict[str, list[_Instance]] = {}  # patient -> instances set aside
        self._choices: dict[str, dict[str, InputClass]] = {}  # uid -> proxy choices
        self._lock = threading.RLock()
        self._new_inputs()  # an input whose constructor fails stops the node at its start

    def wanted_by(self, dataset: Dataset) -> list[str]:
        """Names of the inputs that accept ``dataset``."""
        names = [name for name, cls in self._inputs.items() if cls.accepts(dataset)]
        choices = {
            name: choice
            for name in names
            if (choice := _proxy_choice(self._inputs[name], dataset)) is not None
        }
        if choices:
            with self._lock:
                if len(self._choices) >= _MAX_CHOICES:
                    self._choices.clear()  # instances never added (a spool failure)
                self._choices[str(dataset.get("SOPInstanceUID", ""))] = choices
        return names

    def add(
        self, patient_key: str, names: list[str], uid: str, header: Dataset, path: Path
    ) -> None:
        """Offer an instance (its header, already accepted by :meth:`wanted_by` for
        ``names``) to the named inputs of ``patient_key``."""
        with self._lock:
            inputs = self._patients.get(patient_key)
            if inputs is None:
                inputs = self._new_inputs()
                self._patients[patient_key] = inputs
            arriving = _Instance(names, uid, header, path, self._choices.pop(uid, {}))
            refused = [name for name in names if not _offer(inputs[name], name, arriving)]
            if refused:
                self._refused.setdefault(patient_key, []).append(arriving.only(refused))
            now = time.time()
            first, _ = self._arrivals.get(patient_key, (now, now))
            self._arrivals[patient_key] = (first, now)

    def _new_inputs(self) -> dict[str, InputObject]:
        options = self._options
        return {
            name: cls(None if options is None else replace(options))
            for name, cls in self._inputs.items()
        }

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
        instances (input -> uid -> path); otherwise return ``None``. Instances the
        inputs refused are offered to the patient's fresh inputs."""
        with self._lock:
            inputs = self._patients.get(patient_key)
            if inputs is None or not all(_validates(n, i, patient_key) for n, i in inputs.items()):
                return None
            del self._patients[patient_key]
            self._arrivals.pop(patient_key, None)
            members = {name: dict(item.paths) for name, item in inputs.items()}
            taken = {uid for paths in members.values() for uid in paths}
            for instance in self._refused.pop(patient_key, []):
                if instance.uid not in taken:
                    self.add(
                        patient_key, instance.names, instance.uid, instance.header, instance.path
                    )
            return members

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
                    required_tags=[_tag_name(tag) for tag in item.required_tags],
                    required_values={_tag_name(k): str(v) for k, v in item.required_values.items()},
                )
                for name, item in inputs.items()
            ]

    def headers(self, patient_key: str) -> list[Dataset]:
        """The headers (no pixel data) held for ``patient_key``, across its inputs."""
        with self._lock:
            inputs = self._patients.get(patient_key, {})
            found: dict[str, Dataset] = {}
            for item in inputs.values():
                found.update((str(dataset.SOPInstanceUID), dataset) for dataset in item)
            return list(found.values())


@dataclass(frozen=True)
class _Instance:
    """An instance offered to some inputs of a patient."""

    names: list[str]
    uid: str
    header: Dataset
    path: Path
    choices: dict[str, InputClass] = field(default_factory=dict)

    def only(self, names: list[str]) -> "_Instance":
        return _Instance(names, self.uid, self.header, self.path, self.choices)


def _offer(item: InputObject, name: str, instance: _Instance) -> bool:
    """Offer ``instance`` to ``item``; tell whether it took it (a refusal is logged)."""
    choice = instance.choices.get(name)
    become = getattr(item, "become", None)  # an input that is either of several (a proxy)
    if become is not None and choice is not None:
        become(choice)
    try:
        item.offer(instance.header, instance.path, checked=True)
    except InvalidDataset as exc:
        logger.info("input %r refused an instance, kept in the spool: %s", name, exc)
        return False
    except Exception:
        logger.exception("input %r: add_image() raised; the instance stays in the spool", name)
        return False
    return True


def _proxy_choice(cls: InputClass, dataset: Dataset) -> InputClass | None:
    """Which of its options an input that is either of several would be for ``dataset``."""
    choose = getattr(cls, "choose", None)
    return None if choose is None else choose(dataset)


def _validates(name: str, item: InputObject, patient_key: str) -> bool:
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
