"""``DynamicInput``: an input of a varying number of series, kept apart by one tag."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydicom import Dataset
from pydicom.tag import BaseTag

from dicomflow.dicom.tags import TagLike
from dicomflow.errors import IncorrectlyConfigured
from dicomflow.node.input import SERIES_INSTANCE_UID, AbstractInput, required_tags_of


class DynamicLeaf:
    """The instances of one key (one series, by default) of a :class:`DynamicInput`."""

    def __init__(self, owner: AbstractInput | None = None) -> None:
        self.data: dict[str, Dataset] = {}
        self.owner = owner

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Dataset]:
        return iter(list(self.data.values()))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Dataset):
            item = item.get("SOPInstanceUID")
        return str(item) in self.data

    @property
    def images(self) -> int:
        return len(self)

    def get_datasets(self) -> list[Dataset]:
        return list(self)

    def get_path(self, dicom: Dataset) -> Path:
        """Where ``dicom`` is stored (see :meth:`AbstractInput.get_path`)."""
        if self.owner is None:
            raise IncorrectlyConfigured("This DynamicLeaf belongs to no input with a directory.")
        return self.owner.get_path(dicom)


class DynamicInput(AbstractInput):
    """An input of a varying number of series: instances are kept apart by the value of
    ``separator_tag`` (Series Instance UID by default). ``data`` maps that value (as
    text) to a :class:`DynamicLeaf`; ``get_data()`` gives a dict of the grinder's
    result per leaf. The value is only ever a key in memory, never part of a path."""

    separator_tag: ClassVar[TagLike] = SERIES_INSTANCE_UID

    def __len__(self) -> int:
        return sum(len(leaf) for leaf in self.data.values())

    def __iter__(self) -> Iterator[Dataset]:
        return iter([dataset for leaf in list(self.data.values()) for dataset in leaf])

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Dataset):
            item = item.get("SOPInstanceUID")
        return str(item) in self.paths or any(str(item) in leaf for leaf in self.data.values())

    @classmethod
    def validate_image(cls, dicom: Dataset) -> bool:
        """As :meth:`AbstractInput.validate_image`, and ``dicom`` has the separator tag."""
        return super().validate_image(dicom) and _separator(cls) in dicom

    def get_key(self, dataset: Dataset) -> str:
        """The leaf key of ``dataset``: its separator value as text."""
        return str(dataset[_separator(type(self))].value)

    def get_data(self) -> dict[str, Any]:
        grinder = type(self).image_grinder
        return {key: grinder(leaf) for key, leaf in self.data.items()}

    def _store(self, uid: str, dicom: Dataset) -> None:
        key = self.get_key(dicom)
        for other_key, leaf in list(self.data.items()):  # a resent instance moves
            if other_key != key and uid in leaf.data:
                del leaf.data[uid]
        self.data.setdefault(key, DynamicLeaf(self)).data[uid] = dicom

    @classmethod
    def _check_attributes(cls) -> None:
        super()._check_attributes()
        required_tags_of(cls, [cls.separator_tag], "separator_tag")


def _separator(cls: type[DynamicInput]) -> BaseTag:
    return required_tags_of(cls, [cls.separator_tag])[0]
