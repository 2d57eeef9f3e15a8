"""``IdentityMapping``: the pseudonyms given to patients and UIDs when anonymizing.

Each original PatientID gets ``<prefix><n>`` (``n`` zero-padded to
``prefix_size`` digits, counting from 0 in order of first appearance); each
original Study, Series and SOP Instance UID gets a freshly generated UID. The
same original always maps to the same replacement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from math import ceil, log10
from pprint import pformat
from typing import Any, Protocol

from pydicom.uid import UID, generate_uid


class SeriesTree(Protocol):
    """What the mapping reads of :class:`dicomflow.dicom.image_tree.SeriesTree`."""

    data: Mapping[str, Any]


class StudyTree(Protocol):
    data: Mapping[str, Any]

    def series(self) -> Iterable[SeriesTree]: ...


class PatientTree(Protocol):
    data: Mapping[str, Any]

    def studies(self) -> Iterable[StudyTree]: ...


class DicomTree(Protocol):
    data: Mapping[str, Any]

    def patients(self) -> Iterable[PatientTree]: ...


PATIENT_PREFIX = "AnonymizedPatientID_"


class IdentityMapping:
    """Maps original PatientIDs and UIDs to their replacements."""

    def __init__(self, prefix_size: int = 4) -> None:
        self.StudyUIDMapping: dict[str, UID] = {}
        self.SeriesUIDMapping: dict[str, UID] = {}
        self.SOP_UIDMapping: dict[str, UID] = {}
        self.PatientMapping: dict[str, str] = {}
        self.prefix_size = prefix_size

    def _tables(self) -> tuple[Mapping[str, str], ...]:
        return (
            self.PatientMapping,
            self.StudyUIDMapping,
            self.SeriesUIDMapping,
            self.SOP_UIDMapping,
        )

    def __contains__(self, key: object) -> bool:
        return any(str(key) in table for table in self._tables())

    def __getitem__(self, key: str) -> str:
        found = self.get_mapping(key)
        if found is None:
            raise KeyError(key)
        return found

    def get_mapping(self, key: str) -> str | None:
        """Return the replacement of ``key`` (a PatientID or UID), or ``None`` if unmapped."""
        for table in self._tables():
            if str(key) in table:
                return table[str(key)]
        return None

    def add_StudyUID(self, StudyInstanceUID: str) -> UID:
        return _map_uid(str(StudyInstanceUID), self.StudyUIDMapping)

    def add_SeriesUID(self, SeriesInstanceUID: str) -> UID:
        return _map_uid(str(SeriesInstanceUID), self.SeriesUIDMapping)

    def add_SOP_UID(self, SOPInstanceUID: str) -> UID:
        return _map_uid(str(SOPInstanceUID), self.SOP_UIDMapping)

    def add_Patient(self, PatientID: str, patient_prefix: str = PATIENT_PREFIX) -> str:
        """Return the pseudonym of ``PatientID``, giving it the next number if new."""
        key = str(PatientID)
        if key not in self.PatientMapping:
            number = str(len(self.PatientMapping)).zfill(self.prefix_size)
            self.PatientMapping[key] = f"{patient_prefix}{number}"
        return self.PatientMapping[key]

    def fill_from_SeriesTree(self, seriesTree: SeriesTree) -> None:
        for sop_instance_uid in seriesTree.data:
            _map_uid(sop_instance_uid, self.SOP_UIDMapping)

    def fill_from_StudyTree(self, studyTree: StudyTree) -> None:
        for series_instance_uid in studyTree.data:
            _map_uid(series_instance_uid, self.SeriesUIDMapping)
        for series in studyTree.series():
            self.fill_from_SeriesTree(series)

    def fill_from_PatientTree(self, patientTree: PatientTree) -> None:
        for study_instance_uid in patientTree.data:
            _map_uid(study_instance_uid, self.StudyUIDMapping)
        for study in patientTree.studies():
            self.fill_from_StudyTree(study)

    def fill_from_DicomTree(
        self,
        dicomTree: DicomTree,
        patient_prefix: str = PATIENT_PREFIX,
        change_UIDs: bool = True,
    ) -> None:
        """Map every patient of ``dicomTree`` and, with ``change_UIDs``, every UID in it.

        ``prefix_size`` becomes the number of digits needed to number the patients.
        """
        self.prefix_size = max(ceil(log10(max(len(dicomTree.data), 1))), 1)
        for patient_id in dicomTree.data:
            self.add_Patient(patient_id, patient_prefix)
        if change_UIDs:
            for patient in dicomTree.patients():
                self.fill_from_PatientTree(patient)

    def __str__(self) -> str:
        text = "Identity Mapping"
        if self.PatientMapping:
            text += f"\n  Patient Mapping\n{pformat(self.PatientMapping, indent=4)}"
        if self.StudyUIDMapping:
            text += f"\n  Study Mapping with {len(self.StudyUIDMapping)} Mappings"
        if self.SeriesUIDMapping:
            text += f"\n  Series Mapping with {len(self.SeriesUIDMapping)}"
        if self.SOP_UIDMapping:
            text += f"\n  SOP Mapping with {len(self.SOP_UIDMapping)} Mappings"
        return text


def _map_uid(uid: str, table: dict[str, UID]) -> UID:
    if uid not in table:
        table[uid] = generate_uid()
    return table[uid]
