"""``HistoricAbstractInput``: an input that, when a patient's new study arrives, fetches
that patient's earlier studies from a PACS, so that one round sees both.

The first instance offered to an empty input (one with a StudyDate) is the trigger:
``check_query_dataset(instance)`` returns the first C-FIND (by default: the
patient's studies, at STUDY level by PatientID), and a thread queries the PACS at
``address``. Each answer goes through ``check_query_dataset(answer, query)`` again,
which asks for a further C-FIND or a C-MOVE of it (by default: a C-MOVE of every
study dated before the new one). The C-MOVEs send the studies to the node's own AE
title; the node receives them like any instance and offers them to this input, which
holds those dated before the trigger's study date, by study date and series
description (``historic_dataset``, what ``HistoricGrinder`` gives ``process()``).
``validate()`` is true once the fetching is done.

The names and behaviour follow DicomNode's ``dicomnode.server.input.HistoricAbstractInput``:
``address``, ``check_query_dataset``, ``thread_target``, ``HistoricAction``,
``HistoricInputState``, ``HistoricGrinder``, ``triggering_dataset``,
``historic_dataset``, ``state``, ``thread``; the trigger is not held (``add_image``
returns 0). Deliberate differences:

- ``check_query_dataset`` has a default (the patient's earlier studies); DicomNode's
  is abstract.
- The input takes its ``study_date`` from the trigger when nobody set it (DicomNode's
  patient node sets it).
- A fetch that cannot reach the PACS or gets a failure status puts the input back to
  ``EMPTY`` (logged), so the patient's next instance tries again; DicomNode's stays
  fetching and never validates.
- ``validate()`` waits at most ``fetch_wait_s`` (1 s, as DicomNode) for the thread.
  The node checks a patient when an association that sent it instances is released:
  a PACS slower than that to answer needs the pipeline's ``quiet_period_s``.
- In the processing worker the input is rebuilt from the node's files of the
  instances it held, without fetching again.
- The C-FIND and C-MOVE go over dicomflow's requestor (over TLS when ``address.tls``,
  with the files of ``tls``), in ``information_model`` (patient root, as DicomNode),
  each on its own association.
"""

import threading
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.errors import DicomflowError, IncorrectlyConfigured, InvalidDataset
from dicomflow.net.query_retrieve import InformationModel, Operation
from dicomflow.net.requestor import check_report, find, move_report, sop_class_of
from dicomflow.net.retrieve import QueryLevels, create_query_dataset
from dicomflow.node.input import AbstractInput, InputOptions
from dicomflow.tls import TLSFiles

MAX_MATCHES = 10_000
"""A C-FIND of the fetch is cancelled after this many matches (a patient's studies)."""


class HistoricInputState(Enum):
    EMPTY = 1
    FETCHING = 2
    FILLED = 3


class HistoricAction(Enum):
    FIND_QUERY = 1
    MOVE_QUERY = 2


Decision = tuple[HistoricAction, Dataset] | None
"""What ``check_query_dataset`` decides: a C-FIND or C-MOVE of a dataset, or nothing."""


class HistoricGrinder:
    """Gives ``process()`` the input's ``historic_dataset``: study date -> series
    description -> datasets."""

    def __call__(self, image_generator: Any) -> Any:
        if not isinstance(image_generator, HistoricAbstractInput):
            raise TypeError("The HistoricGrinder requires a HistoricAbstractInput")
        return image_generator.historic_dataset


class HistoricAbstractInput(AbstractInput):
    """Set ``address`` (the PACS) and, to fetch other than the patient's earlier
    studies, override ``check_query_dataset``."""

    HistoricGrinder = HistoricGrinder
    HistoricInputState = HistoricInputState
    HistoricAction = HistoricAction
    address: ClassVar[Address | None] = None
    information_model: ClassVar[InformationModel] = InformationModel.PATIENT_ROOT
    tls: ClassVar[TLSFiles | None] = None
    """The client TLS files for an ``address`` with ``tls`` (default: the system's trust
    store, no client certificate)."""
    fetch_wait_s: ClassVar[float] = 1.0
    image_grinder = HistoricGrinder()

    def __init__(self, options: InputOptions | None = None, node_path: object = None) -> None:
        self.triggering_dataset: Dataset | None = None
        self.historic_dataset: dict[str, dict[str, list[Dataset]]] = {}
        self.state = HistoricInputState.EMPTY
        self.thread: threading.Thread | None = None
        self._replaying = False
        super().__init__(options, node_path)  # may load a data_directory's files: filled
        ae_title = getattr(self.options, "ae_title", None)
        if not ae_title:
            raise IncorrectlyConfigured(
                f"Historic input {type(self).__name__} has no AE title in its options: it"
                " moves the studies it fetches to the node's AE title."
            )
        self.ae_title: str = ae_title
        if not isinstance(self.address, Address):
            raise IncorrectlyConfigured(
                f"Historic input {type(self).__name__} needs an address (the PACS to fetch from)."
            )
        self._address: Address = self.address
        if self.enforce_single_study_date:
            self.logger.warning(
                "input %s: enforce_single_study_date is redundant for a historic input",
                type(self).__name__,
            )

    # -- what to fetch ----------------------------------------------------------------

    def check_query_dataset(
        self, current_study: Dataset, query_dataset: Dataset | None = None
    ) -> Decision:
        """What to do with ``current_study``: with no ``query_dataset`` it is the trigger
        (return the first C-FIND, or None to fetch nothing); else it is an answer to the
        C-FIND ``query_dataset`` (return a further C-FIND, a C-MOVE of it, or None).

        By default: find the patient's studies, move those dated before the trigger's.
        """
        if query_dataset is None:
            if not str(current_study.get("PatientID", "")):
                return None
            query = create_query_dataset(
                QueryLevels.STUDY, PatientID=current_study.PatientID, StudyInstanceUID=None
            )
            return HistoricAction.FIND_QUERY, query
        return self._earlier_study(current_study)

    def _earlier_study(self, answer: Dataset) -> Decision:
        trigger = self.triggering_dataset
        uid = str(answer.get("StudyInstanceUID", ""))
        date = str(answer.get("StudyDate", ""))
        if trigger is None or not uid or uid == str(trigger.get("StudyInstanceUID", "")):
            return None
        if not date or self.study_date is None or date >= self.study_date:
            return None
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = answer.get("PatientID", trigger.get("PatientID", ""))
        query.StudyInstanceUID = uid
        return HistoricAction.MOVE_QUERY, query

    # -- fetching -----------------------------------------------------------------------

    def thread_target(self, query_data: Dataset) -> None:
        """Run the C-FINDs, then the C-MOVEs to the node; then the input is filled (or
        empty again, if the PACS failed)."""
        try:
            moves = self._find_all(query_data)
            self.logger.info(
                "input %s: %d stud(ies) to move from %s",
                type(self).__name__,
                len(moves),
                self._address,
            )
            for query in moves:
                self._move(query)
        except (DicomflowError, OSError, ValueError) as exc:
            self.logger.error(
                "input %s: fetching from %s failed: %s", type(self).__name__, self._address, exc
            )
            self.state = HistoricInputState.EMPTY
            return
        self.logger.info("input %s: fetched; it holds %d image(s)", type(self).__name__, len(self))
        self.state = HistoricInputState.FILLED

    def _find_all(self, query_data: Dataset) -> list[Dataset]:
        queries, moves = [query_data], list[Dataset]()
        while queries:
            found: list[Dataset] = []
            for query in queries:
                for answer in self._find(query):
                    action = self.check_query_dataset(answer, query)
                    if action is None:
                        continue
                    kind, dataset = action
                    (found if kind is HistoricAction.FIND_QUERY else moves).append(dataset)
            queries = found
        return moves

    def _find(self, query: Dataset) -> Iterator[Dataset]:
        model, ae_title = self.information_model, self.ae_title
        return find(self._address, query, model, ae_title, self.tls, limit=MAX_MATCHES)

    def _move(self, query: Dataset) -> None:
        sop_class = sop_class_of(self.information_model, Operation.MOVE)
        report = move_report(
            self._address, query, self.ae_title, sop_class, self.ae_title, tls=self.tls
        )
        check_report(report, "C-MOVE", self._address)

    # -- holding ---------------------------------------------------------------------------

    def add_image(self, dicom: Dataset) -> int:
        """Trigger the fetch (the first instance with a StudyDate: not held, returns 0),
        or hold an instance dated before the study date (returns 1).

        Raises:
            InvalidDataset: for an instance not dated before the study date, or without
                the required tags, a StudyDate or a SeriesDescription.
        """
        if self._replaying:
            return self._keep(dicom)
        if self.state is HistoricInputState.EMPTY and "StudyDate" in dicom:
            self._trigger(dicom)
            return 0
        if not self._state_based_validation(dicom):
            raise InvalidDataset(f"{self._describe(dicom)} is not dated before the study date.")
        if not self._checked(dicom) and not self.validate_image(dicom):
            raise InvalidDataset(f"{self._describe(dicom)} lacks a required tag or value.")
        return self._keep(dicom)

    def _trigger(self, dicom: Dataset) -> None:
        response = self.check_query_dataset(dicom)
        if response is None:
            return
        self.triggering_dataset = dicom
        if self.study_date is None:
            self.study_date = str(dicom.StudyDate)
        _, query = response
        self.state = HistoricInputState.FETCHING
        self.logger.debug("input %s: fetching from %s", type(self).__name__, self._address)
        self.thread = threading.Thread(
            target=self.thread_target, args=(query,), name="Historic Input", daemon=True
        )
        self.thread.start()

    def _keep(self, dicom: Dataset) -> int:
        if "StudyDate" not in dicom or "SeriesDescription" not in dicom:
            raise InvalidDataset(f"{self._describe(dicom)} has no StudyDate or SeriesDescription.")
        self._hold(dicom)
        return 1

    def _store(self, uid: str, dicom: Dataset) -> None:
        super()._store(uid, dicom)
        by_series = self.historic_dataset.setdefault(str(dicom.StudyDate), {})
        by_series.setdefault(str(dicom.SeriesDescription), []).append(dicom)

    def _state_based_validation(self, dicom: Dataset) -> bool:
        if self.study_date is None or "StudyDate" not in dicom:
            return False
        return str(dicom.StudyDate) < self.study_date

    def load(self, paths: Iterable[tuple[str, Path]], *, checked: bool = True) -> None:
        """Hold the instances of ``paths`` as they are (in the processing worker: the node
        already chose them), without fetching; the input is then filled."""
        self._replaying = True
        try:
            super().load(paths, checked=checked)
        finally:
            self._replaying = False
        self.state = HistoricInputState.FILLED

    def validate(self) -> bool:
        """True once the fetching is done (waiting up to ``fetch_wait_s`` for it)."""
        if self.thread is not None and self.state is not HistoricInputState.FILLED:
            self.thread.join(self.fetch_wait_s)
        return self.state is HistoricInputState.FILLED

    def __str__(self) -> str:
        studies = []
        for study_date, series in self.historic_dataset.items():
            lines = [f"    {name} - {len(datasets)} Datasets" for name, datasets in series.items()]
            studies.append(f"  {study_date}:\n" + "\n".join(lines))
        return f"Historic Input - {self.state}\n" + "\n".join(studies)
