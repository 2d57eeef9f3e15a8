"""Virtual elements: the entries of a blueprint, each able to make one data element.

A virtual element is turned into a data element in two steps.
:meth:`VirtualElement.corporealialize` looks at the parent datasets once per
built series and returns either a finished :class:`~pydicom.DataElement` (the
same for every instance), ``None`` (leave the attribute out) or an
:class:`InstanceVirtualElement`, whose :meth:`~InstanceVirtualElement.produce`
is then called once per instance with an :class:`InstanceEnvironment`.
"""

import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, Union

from pydicom import DataElement, Dataset
from pydicom.datadict import dictionary_description
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

from dicomflow.errors import ConstructionFailure

logger = logging.getLogger(__name__)

T = TypeVar("T")
TagType = BaseTag | int | str | tuple[int, int]
Produced = Union[DataElement, "InstanceVirtualElement", None]
NAME_LENGTH = 64


def get_pivot(datasets: Dataset | Iterable[Dataset]) -> Dataset | None:
    """Return ``datasets`` if it is one dataset, else its first dataset (``None`` if empty)."""
    if isinstance(datasets, Dataset):
        return datasets
    return next(iter(datasets), None)


def _default_name(tag: BaseTag) -> str:
    try:
        return dictionary_description(tag)
    except KeyError:
        return "Private tag" if tag.is_private else f"Unknown tag {tag}"


@dataclass
class InstanceEnvironment:
    """What an instance element may use to produce its value for one instance."""

    instance_number: int
    factory: Any = None
    kwargs: dict[Any, Any] = field(default_factory=dict)
    instance_dataset: Dataset | None = None
    image: Any = None


class VirtualElement(ABC):
    """One attribute of a blueprint: a tag, a VR and a way to obtain the value."""

    def __init__(self, tag: TagType, VR: str, name: str | None = None) -> None:
        self.tag: BaseTag = Tag(tag)
        self.VR = VR
        if name is not None and len(name) > NAME_LENGTH:
            logger.warning("virtual element %s: name truncated to %d characters", tag, NAME_LENGTH)
            name = name[:NAME_LENGTH]
        self.name = name if name is not None else _default_name(self.tag)

    @property
    def is_private(self) -> bool:
        """True for a tag of an odd group."""
        return bool(self.tag.is_private)

    @abstractmethod
    def corporealialize(self, datasets: Iterable[Dataset]) -> Produced:
        """Return the element for every instance, an instance element, or ``None``."""


class InstanceVirtualElement(VirtualElement):
    """A virtual element whose value differs from instance to instance."""

    def corporealialize(self, datasets: Iterable[Dataset]) -> Produced:
        return self

    @abstractmethod
    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        """Return the element for the instance described by ``instance_environment``."""


class StaticElement(VirtualElement, Generic[T]):
    """The same given value in every instance."""

    def __init__(self, tag: TagType, VR: str, value: T, name: str | None = None) -> None:
        super().__init__(tag, VR, name)
        self.value: T = value

    def corporealialize(self, datasets: Iterable[Dataset]) -> DataElement:
        return DataElement(self.tag, self.VR, self.value)

    def __str__(self) -> str:
        return f"<StaticElement {self.name}: {self.tag} {self.VR} {self.value}>"


class CopyElement(VirtualElement):
    """The parent series' value (of its first dataset); required unless ``Optional``."""

    def __init__(self, tag: TagType, Optional: bool = False, name: str | None = None) -> None:
        super().__init__(tag, "", name)
        self.Optional = Optional

    def corporealialize(self, datasets: Iterable[Dataset]) -> DataElement | None:
        pivot = get_pivot(datasets)
        if pivot is None:
            raise ConstructionFailure(f"Cannot copy {self.tag} {self.name}: no parent dataset.")
        if self.tag in pivot:
            return pivot[self.tag]
        if self.Optional:
            return None
        raise KeyError(f"{self.tag} {self.name}: not found in the parent dataset.")


class DiscardElement(VirtualElement):
    """Leave the attribute out (overrides an element of a blueprint added before)."""

    def __init__(self, tag: TagType) -> None:
        super().__init__(tag, "")

    def corporealialize(self, datasets: Iterable[Dataset]) -> None:
        return None


class SeriesElement(VirtualElement):
    """A value computed once per series by ``func()`` or ``func(parent_dataset)``."""

    def __init__(
        self,
        tag: TagType,
        VR: str,
        func: Callable[[Dataset], Any] | Callable[[], Any],
        name: str | None = None,
    ) -> None:
        super().__init__(tag, VR, name)
        self.func = func
        self.require_dataset = _positional_count(func) == 1

    def corporealialize(self, datasets: Iterable[Dataset]) -> DataElement:
        func: Callable[..., Any] = self.func
        value = func(get_pivot(datasets)) if self.require_dataset else func()
        return DataElement(self.tag, self.VR, value)


def _positional_count(func: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 0
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in parameters if p.kind in kinds and p.default is p.empty)


class FunctionalElement(InstanceVirtualElement):
    """A value computed per instance by ``func(instance_environment)``."""

    def __init__(
        self,
        tag: TagType,
        VR: str,
        func: Callable[[InstanceEnvironment], Any],
        name: str | None = None,
    ) -> None:
        super().__init__(tag, VR, name)
        self.func = func

    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        return DataElement(self.tag, self.VR, self.func(instance_environment))


class InstanceCopyElement(InstanceVirtualElement):
    """The value of the parent instance at the same position in the series."""

    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        parent = instance_environment.instance_dataset
        if parent is None:
            raise ConstructionFailure(
                f"Cannot copy {self.tag} {self.name} into instance "
                f"{instance_environment.instance_number}: it has no parent instance."
            )
        element = parent.get(self.tag)
        return element if element is not None else DataElement(self.tag, self.VR, None)


class IndexElement(InstanceVirtualElement):
    """``indexable[instance_number - 1]`` for each instance."""

    def __init__(
        self, tag: TagType, VR: str, indexable: Sequence[Any], name: str | None = None
    ) -> None:
        super().__init__(tag, VR, name)
        self.indexable = indexable

    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        value = self.indexable[instance_environment.instance_number - 1]
        return DataElement(self.tag, self.VR, value)


class KeyedIndexElement(InstanceVirtualElement):
    """``kwargs[key][instance_number - 1]`` of the build call, for each instance."""

    def __init__(self, tag: TagType, VR: str, key: Any, name: str | None = None) -> None:
        super().__init__(tag, VR, name)
        self.key = key

    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        values = instance_environment.kwargs[self.key]
        return DataElement(self.tag, self.VR, values[instance_environment.instance_number - 1])


class CopyOrElseElement(InstanceVirtualElement):
    """The parent's value if present, else ``orElse`` (a value, element or virtual element)."""

    def __init__(self, tag: TagType, VR: str, orElse: Any, name: str | None = None) -> None:
        super().__init__(tag, VR, name)
        self._or_else = orElse

    def corporealialize(self, datasets: Iterable[Dataset]) -> Produced:
        pivot = get_pivot(datasets)
        if pivot is not None and self.tag in pivot:
            return pivot[self.tag]
        if isinstance(self._or_else, DataElement):
            return self._or_else
        if isinstance(self._or_else, VirtualElement):
            return self._or_else.corporealialize(datasets)
        return DataElement(self.tag, self.VR, self._or_else)

    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        return DataElement(self.tag, self.VR, self._or_else)


class SequenceElement(InstanceVirtualElement):
    """A sequence with one item per blueprint, each item built like an instance.

    A blueprint is anything iterating virtual elements (a ``Blueprint``).
    """

    def __init__(
        self,
        tag: TagType,
        sequence_blueprints: Iterable[Iterable["VirtualElement"]],
        name: str | None = None,
    ) -> None:
        super().__init__(tag, "SQ", name)
        self._blueprints = list(sequence_blueprints)
        self._items: list[list[DataElement | InstanceVirtualElement]] | None = None

    def corporealialize(self, datasets: Iterable[Dataset]) -> "SequenceElement":
        parents = datasets if isinstance(datasets, Dataset) else list(datasets)
        self._items = [
            [p for p in (ve.corporealialize(parents) for ve in blueprint) if p is not None]
            for blueprint in self._blueprints
        ]
        return self

    def produce(self, instance_environment: InstanceEnvironment) -> DataElement:
        if self._items is None:
            logger.error("sequence element %s: produced before corporealialize", self.tag)
            raise ConstructionFailure(
                f"Sequence element {self.tag}: corporealialize must be called before produce."
            )
        items = [_item(parts, instance_environment) for parts in self._items]
        return DataElement(self.tag, "SQ", DicomSequence(items))


def _item(
    parts: list[DataElement | InstanceVirtualElement], environment: InstanceEnvironment
) -> Dataset:
    item = Dataset()
    for part in parts:
        item.add(part if isinstance(part, DataElement) else part.produce(environment))
    return item
