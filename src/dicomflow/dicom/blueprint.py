"""Blueprints: the attributes of a series to build, as virtual elements keyed by tag.

Blueprints compose with ``+`` (the right-hand side wins where both have a
tag) and iterate in tag order. A private element at ``(gggg,BBee)`` gets its
block reserved: the private creator at ``(gggg,00BB)`` and, at
``(gggg,BBFE)`` and ``(gggg,BBFF)``, the names and VRs of the block's
elements, so a reader can tell what the private attributes hold.
"""

import logging
from collections.abc import Iterable, Iterator

from pydicom.tag import BaseTag, Tag

from dicomflow.dicom.virtual_element import (
    CopyElement,
    InstanceCopyElement,
    StaticElement,
    TagType,
    VirtualElement,
)
from dicomflow.errors import BlueprintConstructionFailure

logger = logging.getLogger(__name__)

PRIVATE_CREATOR = "Dicomnode - Private tags version: 1"
PRIVATE_NAMES_ELEMENT = 0xFE
PRIVATE_VRS_ELEMENT = 0xFF
_LO_LENGTH = 64


class Blueprint:
    """The virtual elements of a series to build, one per tag."""

    def __init__(self, virtual_elements: Iterable[VirtualElement] = ()) -> None:
        self._elements: dict[BaseTag, VirtualElement] = {}
        for virtual_element in virtual_elements:
            self.add_virtual_element(virtual_element)

    def __getitem__(self, tag: TagType) -> VirtualElement:
        return self._elements[Tag(tag)]

    def __setitem__(self, tag: TagType, virtual_element: VirtualElement) -> None:
        if not isinstance(virtual_element, VirtualElement):
            raise TypeError(
                f"A blueprint holds virtual elements; got {type(virtual_element).__name__} "
                f"at {Tag(tag)}."
            )
        if Tag(tag) != virtual_element.tag:
            raise ValueError(
                f"Tag {Tag(tag)} does not match the virtual element's tag {virtual_element.tag}."
            )
        self.add_virtual_element(virtual_element)

    def __delitem__(self, tag: TagType) -> None:
        key = Tag(tag)
        del self._elements[key]
        if key.is_private and not _is_block_metadata(key):
            self._refresh_block(key)

    def get(self, tag: TagType, default: VirtualElement | None = None) -> VirtualElement | None:
        """The element at ``tag``, or ``default``."""
        return self._elements.get(Tag(tag), default)

    def __contains__(self, tag: object) -> bool:
        try:
            return Tag(tag) in self._elements  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return False

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[VirtualElement]:
        return iter([self._elements[tag] for tag in sorted(self._elements)])

    def __add__(self, other: "Blueprint") -> "Blueprint":
        combined = type(self)()
        for virtual_element in [*self, *other]:
            if not _is_block_metadata(virtual_element.tag):
                combined.add_virtual_element(virtual_element)
        return combined

    def add_virtual_element(self, virtual_element: VirtualElement) -> None:
        """Add ``virtual_element``, replacing any element at its tag.

        Raises:
            BlueprintConstructionFailure: for a private tag the blueprint reserves (a creator
                slot ``(gggg,00xx)`` or an element ``xxFE``/``xxFF``).
        """
        if not isinstance(virtual_element, VirtualElement):
            raise TypeError(
                f"A blueprint holds virtual elements; got {type(virtual_element).__name__}."
            )
        tag = virtual_element.tag
        if tag.is_private:
            _check_private(tag)
        self._elements[tag] = virtual_element
        if tag.is_private:
            self._refresh_block(tag)

    def get_required_tags(self) -> list[int]:
        """Return, sorted, the tags the parent series must hold for a build to succeed."""
        required = [
            int(ve.tag)
            for ve in self._elements.values()
            if (isinstance(ve, CopyElement) and not ve.Optional)
            or isinstance(ve, InstanceCopyElement)
        ]
        return sorted(required)

    def _refresh_block(self, tag: BaseTag) -> None:
        """Rewrite the creator, names and VRs of the private block holding ``tag``."""
        base = tag & 0xFFFFFF00
        members = [
            ve
            for key, ve in sorted(self._elements.items())
            if key & 0xFFFFFF00 == base and not _is_block_metadata(key)
        ]
        metadata = (
            Tag((tag & 0xFFFF0000) | ((tag >> 8) & 0xFF)),
            Tag(base | PRIVATE_NAMES_ELEMENT),
            Tag(base | PRIVATE_VRS_ELEMENT),
        )
        if not members:
            for key in metadata:
                self._elements.pop(key, None)
            return
        names = [
            f"({ve.tag.group:04x},{ve.tag.element:04x}) {ve.name}"[:_LO_LENGTH] for ve in members
        ]
        values: tuple[str | list[str], ...] = (
            PRIVATE_CREATOR,
            names,
            [ve.VR or "UN" for ve in members],
        )
        for key, value in zip(metadata, values, strict=True):
            self._elements[key] = StaticElement(key, "LO", value)


def _is_block_metadata(tag: int) -> bool:
    """True for a private creator slot or a block's names/VRs element."""
    element = tag & 0xFFFF
    return bool(tag & 0x10000) and (
        element <= 0xFF or element & 0xFF in (PRIVATE_NAMES_ELEMENT, PRIVATE_VRS_ELEMENT)
    )


def _check_private(tag: BaseTag) -> None:
    if tag.element <= 0xFF:
        logger.error("blueprint: private creator slot %s is allocated automatically", tag)
        raise BlueprintConstructionFailure(
            f"Private tag {tag} is a private creator slot; blocks are reserved automatically."
        )
    if tag.element & 0xFF in (PRIVATE_NAMES_ELEMENT, PRIVATE_VRS_ELEMENT):
        logger.error("blueprint: private tag %s is reserved for element names and VRs", tag)
        raise BlueprintConstructionFailure(
            f"Private tag {tag} is reserved for the names and VRs of its block's elements."
        )
