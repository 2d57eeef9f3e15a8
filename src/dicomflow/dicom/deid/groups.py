"""Private attributes and the repeating curve (50xx) and overlay (60xx) groups.

Table E.1-1 cannot name these by tag. Private attributes go, at every depth, except those
of the safe-private list (Retain Safe Private), which keep their private creator.
Curves (retired) go. An overlay plane goes as a whole group unless Clean Graphics is
selected: its bitmap is its data, and a plane without its data would not conform; with
Clean Graphics the planes stay and their text (description, label, comments) is cleaned.
"""

from __future__ import annotations

from collections.abc import Callable

from pydicom import Dataset
from pydicom.dataelem import DataElement

from dicomflow.dicom.deid.profile import DeidProfile, Option, SafePrivate

__all__ = ["remove_private", "remove_repeating_groups"]

_OVERLAY_TEXT = {0x0022, 0x1500, 0x4000}  # OverlayDescription, OverlayLabel, OverlayComments


def remove_private(dataset: Dataset, profile: DeidProfile) -> None:
    """Private attributes go, except the safe-private list's (with their creators)."""
    safe = profile.safe_private if Option.RETAIN_SAFE_PRIVATE in profile.options else ()
    _remove_private(dataset, safe)


def _remove_private(dataset: Dataset, safe: tuple[SafePrivate, ...]) -> None:
    for element in list(dataset):
        if element.tag.is_private and not _is_safe(dataset, element, safe):
            del dataset[element.tag]
        elif element.VR == "SQ":
            for item in element.value or ():
                _remove_private(item, safe)


def _is_safe(dataset: Dataset, element: DataElement, safe: tuple[SafePrivate, ...]) -> bool:
    """Whether a private attribute (or the creator of a block holding one) is safe."""
    tag = element.tag
    if tag.element < 0x10:
        return False  # group length or an illegal private element
    if tag.element <= 0xFF:  # a private creator
        name = str(element.value).strip()
        return any(s.creator == name and s.group == tag.group for s in safe)
    creator = dataset.get((tag.group << 16) | (tag.element >> 8))
    name = str(creator.value).strip() if creator is not None else ""
    return any(
        s.creator == name and s.group == tag.group and s.element == tag.element & 0xFF for s in safe
    )


def remove_repeating_groups(
    dataset: Dataset, profile: DeidProfile, clean: Callable[[str], str]
) -> None:
    """Curves go; overlays go whole, or keep their planes with ``clean`` text (Clean Graphics)."""
    keep_overlays = Option.CLEAN_GRAPHICS in profile.options
    for element in list(dataset):
        group = element.tag.group
        if _is_repeating(group, 0x5000):
            del dataset[element.tag]
        elif _is_repeating(group, 0x6000):
            if not keep_overlays:
                del dataset[element.tag]
            elif element.tag.element in _OVERLAY_TEXT and isinstance(element.value, str):
                element.value = clean(element.value)
        elif element.VR == "SQ":
            for item in element.value or ():
                remove_repeating_groups(item, profile, clean)


def _is_repeating(group: int, base: int) -> bool:
    return base <= group <= base + 0xFF and group % 2 == 0
