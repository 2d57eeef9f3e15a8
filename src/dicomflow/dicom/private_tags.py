"""Private tags known by name: register them with pydicom's dictionary, and give the
elements of a dataset read without them their VRs.

A private tag entry is ``{tag: (VR, VM, name, retired, keyword)}``, as in
``pydicom.datadict.DicomDictionary``.
"""

from collections.abc import Mapping

from pydicom import DataElement, Dataset, Sequence
from pydicom._dicom_dict import DicomDictionary
from pydicom.datadict import keyword_dict
from pydicom.values import convert_SQ, convert_string

PrivateTags = Mapping[int, tuple[str, str, str, str, str]]


def update_private_tags(new_dict_items: PrivateTags) -> None:
    """Register ``new_dict_items`` with pydicom, so their keywords work as attributes
    (``dataset.NewPrivateTag``). This changes pydicom's dictionary for the whole process."""
    DicomDictionary.update(new_dict_items)
    keyword_dict.update({entry[4]: tag for tag, entry in new_dict_items.items()})


def apply_private_tags(
    dataset: Dataset,
    private_tags: PrivateTags | None = None,
    is_implicit_VR: bool = True,
    is_little_endian: bool = True,
) -> Dataset:
    """Decode the ``UN`` elements of ``dataset`` listed in ``private_tags`` (also inside
    sequences) as their VR says; return ``dataset``, changed in place."""
    tags = private_tags or {}
    for element in list(dataset):
        if element.VR == "SQ":
            for item in element.value:
                apply_private_tags(item, tags, is_implicit_VR, is_little_endian)
        elif element.VR == "UN" and element.tag in tags:
            dataset[element.tag] = _decoded(element, tags, is_implicit_VR, is_little_endian)
    return dataset


def _decoded(
    element: DataElement, tags: PrivateTags, implicit: bool, little_endian: bool
) -> DataElement:
    vr = tags[element.tag][0]
    value = element.value
    if vr == "SQ":
        items = convert_SQ(value, implicit, little_endian)
        value = Sequence(
            [apply_private_tags(item, tags, implicit, little_endian) for item in items]
        )
    elif vr == "LO":
        value = convert_string(value, little_endian)
    return DataElement(element.tag, vr, value)
