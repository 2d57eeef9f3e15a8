"""Pseudonymize datasets: patient identity replaced, person names blanked, UIDs remapped.

- :func:`anonymize_dataset` -- one dataset, in place: PatientName becomes
  ``<PatientName>_<PatientNumber>``, PatientID ``<PatientNumber>``, every other
  person name ``Anon_<attribute name>``, in sequences and file meta too. UIDs
  are kept.
- :func:`anonymize_dicom_tree` -- makes the function to ``DicomTree.map`` over a
  tree with an :class:`~dicomflow.dicom.identity_mapping.IdentityMapping`
  filled from it: the same replacements, with PatientID, StudyID and every UID
  the mapping knows replaced consistently across the tree.
"""

from collections.abc import Callable

from pydicom import DataElement, Dataset
from pydicom.multival import MultiValue

from dicomflow.dicom.identity_mapping import IdentityMapping
from dicomflow.dicom.keys import shorten

BASE_ANONYMIZED_PATIENT_NAME = "Anonymized_PatientName"
_PATIENT_NAME = 0x0010_0010
_PATIENT_ID = 0x0010_0020

__all__ = ["BASE_ANONYMIZED_PATIENT_NAME", "anonymize_dataset", "anonymize_dicom_tree"]


def anonymize_dataset(ds: Dataset, PatientName: str = "Anon", PatientNumber: str = "0000") -> None:
    """Replace the patient's name and ID and blank every other person name in ``ds``."""
    if _PATIENT_ID in ds:
        ds[_PATIENT_ID].value = PatientNumber
    _replace_names(ds, f"{PatientName}_{PatientNumber}", None)


def anonymize_dicom_tree(
    UIDMapping: IdentityMapping,
    PatientName: str = BASE_ANONYMIZED_PATIENT_NAME,
    StudyID: str | None = "Study",
) -> Callable[[Dataset], None]:
    """Return a function pseudonymizing one dataset with ``UIDMapping``.

    The dataset's PatientID must be in ``UIDMapping.PatientMapping`` (fill the
    mapping from the tree first); its pseudonym's last ``prefix_size``
    characters number the patient in PatientName and StudyID.

    Raises (from the returned function):
        KeyError: if the dataset's PatientID is not in the mapping.
    """

    def anonymize(dataset: Dataset) -> None:
        patient_id = str(dataset.get("PatientID", ""))
        if patient_id not in UIDMapping.PatientMapping:
            raise KeyError(
                f'PatientID "{shorten(patient_id)}" is not in the identity mapping; '
                "fill it from the tree before anonymizing."
            )
        pseudonym = UIDMapping.PatientMapping[patient_id]
        number = pseudonym[-UIDMapping.prefix_size :]
        dataset.PatientID = pseudonym
        if StudyID:
            dataset.StudyID = f"{StudyID}_{number}"
        _replace_names(dataset, f"{PatientName}_{number}", UIDMapping)

    return anonymize


def _replace_names(ds: Dataset, patient_name: str, mapping: IdentityMapping | None) -> None:
    file_meta = getattr(ds, "file_meta", None)
    if isinstance(file_meta, Dataset):
        _replace_names(file_meta, patient_name, mapping)
    for element in ds:
        _replace_element(element, patient_name, mapping)


def _replace_element(
    element: DataElement, patient_name: str, mapping: IdentityMapping | None
) -> None:
    if element.tag == _PATIENT_NAME:
        element.value = patient_name
    elif element.VR == "PN":
        element.value = f"Anon_{element.name}"
    elif element.VR == "SQ":
        for item in element.value:
            _replace_names(item, patient_name, mapping)
    elif element.VR == "UI" and mapping is not None:
        element.value = _mapped_uids(element.value, mapping)


def _mapped_uids(value: object, mapping: IdentityMapping) -> object:
    if isinstance(value, MultiValue | list):
        return [_mapped_uids(uid, mapping) for uid in value]
    if isinstance(value, str):
        return mapping.get_mapping(value) or value
    return value
