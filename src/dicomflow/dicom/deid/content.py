"""Values inside D and C sequences that have no row of their own.

Table E.1-1 gives some sequences a D (Basic: e.g. ContentSequence, GraphicAnnotationSequence,
PersonIdentificationCodeSequence, InstitutionCodeSequence) or a C action (an option: Clean
Structured Content, Clean Graphics, Clean Descriptors). Their items may hold attributes
without a row, such as an SR ``TextValue``, a ``CodeMeaning`` naming an institution or
the text of a graphic annotation. A D sequence keeps its items (an IOD may require them),
but every text value in them without a row of its own becomes a dummy; a C sequence's
text is cleaned instead. Dates and times follow ContentDate's row (kept, shifted or
dummy). Coded strings (CS), numbers and UIDs without a row stay: they carry the
structure, not the patient. Attributes with their own row follow it, at any depth.
"""

from __future__ import annotations

from collections.abc import Callable

from pydicom import Dataset
from pydicom.dataelem import DataElement

from dicomflow.dicom.deid.profile import Action

__all__ = ["REPLACED_VRS", "Replace", "replace_sequence_contents"]

REPLACED_VRS = {"LO", "SH", "LT", "ST", "UT", "UC", "PN", "AE", "UR", "DA", "DT", "TM"}
Replace = Callable[[DataElement, Action], None]
_CONTAINERS = (Action.DUMMY, Action.CLEAN)


def replace_sequence_contents(
    dataset: Dataset, actions: dict[int, Action], replace: Replace
) -> None:
    """Find the D and C sequences at any depth and ``replace`` the rowless values inside."""
    for element in dataset:
        if element.VR != "SQ":
            continue
        mode = actions.get(int(element.tag))
        for item in element.value or ():
            if mode in _CONTAINERS:
                _contents(item, actions, mode, replace)
            else:
                replace_sequence_contents(item, actions, replace)


def _contents(item: Dataset, actions: dict[int, Action], mode: Action, replace: Replace) -> None:
    for element in item:
        own = actions.get(int(element.tag))
        if element.VR == "SQ":
            inner = own if own in _CONTAINERS else mode if own is None else None
            for sub in element.value or ():
                if inner is None:
                    replace_sequence_contents(sub, actions, replace)
                else:
                    _contents(sub, actions, inner, replace)
        elif own is None and element.VR in REPLACED_VRS and not _skipped(element):
            replace(element, mode)


def _skipped(element: DataElement) -> bool:
    return element.is_empty or element.tag.is_private
