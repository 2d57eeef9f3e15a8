"""``AbstractInput``: one named input of a pipeline, for one patient.

The node offers every received instance to every input of the pipeline. An
input accepts it when the instance has every tag of ``required_tags`` and a
matching value for every entry of ``required_values`` (plain values, compiled
regular expressions or validators, see :mod:`dicomflow.node.validators`). When
all inputs of a patient ``validate()``, each input's ``get_data()`` (by default
its ``image_grinder`` applied to the input itself) prepares what ``process()``
receives under the input's name.

An input is a sized, re-iterable collection of the instances it holds:
``len(input)``, ``for dataset in input``, ``dataset in input``; ``images`` is
the same count and ``data`` maps SOP Instance UID to dataset. In the node
process an input holds the instances' headers (pixel data and every element
over 4 kB left on disk, see :mod:`dicomflow.dicom.header`); in the processing
worker it holds the full datasets. The instance files themselves are kept by
the node's spool, which is what makes an input's state survive a restart: the
instances are offered again, in the same order, to fresh inputs.

``DynamicInput`` (:mod:`dicomflow.node.dynamic_input`) keeps series apart. ``InputA | InputB``
declares an input satisfied by either: it becomes the first
of them that accepts its first instance (:class:`AbstractInputProxy`).
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydicom import Dataset, dcmread, dcmwrite
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag

from dicomflow.dicom.grinders import identity_grinder
from dicomflow.dicom.keys import instance_file_name, shorten
from dicomflow.dicom.tags import TagLike, parse_tag
from dicomflow.errors import IncorrectlyConfigured, InvalidDataset, PipelineDefinitionError
from dicomflow.node.validators import get_validator_for_value

logger = logging.getLogger(__name__)

Grinder = Callable[[Any], Any]
SOP_INSTANCE_UID = 0x00080018
SERIES_INSTANCE_UID = 0x0020000E
STUDY_DATE = 0x00080020


class InputMeta(type):
    """Lets ``InputA | InputB`` declare an input satisfied by either."""

    def __or__(cls, other: Any) -> Any:
        if isinstance(other, InputMeta):
            return either(cls, other)
        return super().__or__(other)  # a type annotation such as ``MyInput | None``


@dataclass
class InputOptions:
    """What the node tells each input it creates (``AbstractInput.Options``).

    In a node, only ``ae_title`` (the node's) is set: the node's spool keeps the
    instance files. An input used on its own with a ``data_directory`` writes each
    instance it accepts there, as ``<SOPInstanceUID>.dcm``, and loads the files
    found there when created. ``lazy`` inputs need a ``data_directory``.
    """

    ae_title: str | None = None
    logger: logging.Logger | None = None
    data_directory: Path | None = None
    lazy: bool = False


class AbstractInput(metaclass=InputMeta):
    """Subclass and set ``required_tags``, ``required_values``, ``image_grinder``
    and ``validate()``."""

    Options: ClassVar[type[InputOptions]] = InputOptions
    required_tags: ClassVar[list[TagLike]] = []
    required_values: ClassVar[dict[TagLike, Any]] = {}
    enforce_single_series: ClassVar[bool] = False
    enforce_single_study_date: ClassVar[bool] = False
    image_grinder: Grinder = staticmethod(identity_grinder)
    _loads_on_creation: ClassVar[bool] = True

    def __init__(self, options: InputOptions | None = None, node_path: object = None) -> None:
        self.options = options if options is not None else InputOptions()
        self.logger: logging.Logger = getattr(self.options, "logger", None) or logger
        self.container: Any = getattr(self.options, "data_directory", None)
        self.data: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        self.single_series_uid: str | None = None
        self._study_date: str | None = None
        self._arriving: tuple[Dataset, Path | None] | None = None
        if self.container is not None and self._loads_on_creation:
            files = sorted(self._folder().glob("*.dcm"))
            self.load(((path.stem, path) for path in files), checked=False)

    # -- the instances held ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Dataset]:
        return iter(list(self.data.values()))

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Dataset):
            item = item.get("SOPInstanceUID")
        return str(item) in self.paths or str(item) in self.data

    def __getitem__(self, key: object) -> Any:
        return self.data[str(key)]

    @property
    def images(self) -> int:
        """The number of instances this input holds."""
        return len(self)

    def get_datasets(self) -> list[Dataset]:
        """The instances held, in arrival order."""
        return list(self)

    def validate(self) -> bool:
        """Return ``True`` when the input has what processing needs (default: ≥ 1 image)."""
        return self.images > 0

    def get_data(self) -> Any:
        """Return what ``process()`` receives for this input: the grinder applied to the
        input itself (a sized collection that can be iterated more than once)."""
        return type(self).image_grinder(self)

    def grind(self) -> Any:
        """Same as :meth:`get_data`."""
        return self.get_data()

    def get_path(self, dicom: Dataset) -> Path:
        """Where the instance ``dicom`` is (or would be) stored: its spool file when the
        node holds it, else a file named by its SOP Instance UID in the options'
        ``data_directory``. No other DICOM value is ever part of the path.

        Raises:
            IncorrectlyConfigured: if the instance is not held and there is no directory.
            InvalidKeyError: if its SOP Instance UID is not a valid UID.
        """
        uid = str(dicom.get("SOPInstanceUID", ""))
        if uid in self.paths:
            return self.paths[uid]
        if self.container is None:
            raise IncorrectlyConfigured(
                f"Input {type(self).__name__}: no data_directory in its options to place"
                f' instance "{shorten(uid)}" in.'
            )
        return self._folder() / instance_file_name(uid)

    # -- accepting instances ----------------------------------------------------------

    @classmethod
    def validate_image(cls, dicom: Dataset) -> bool:
        """Tell whether ``dicom`` has a SOP Instance UID, every required tag and a matching
        value for every required value.

        Raises:
            IncorrectlyConfigured: if a required tag is neither a keyword nor a tag.
        """
        if SOP_INSTANCE_UID not in dicom:
            return False
        if any(tag not in dicom for tag in required_tags_of(cls, cls.required_tags)):
            return False
        values = cls.required_values
        tags = required_tags_of(cls, values)
        return all(
            _value_matches(cls, dicom, t, v) for t, v in zip(tags, values.values(), strict=True)
        )

    @classmethod
    def accepts(cls, dataset: Dataset) -> bool:
        """Tell whether an input of this class could take ``dataset`` (what the node asks
        before it stores an instance)."""
        return cls.validate_image(dataset)

    def add_image(self, dicom: Dataset) -> int:
        """Hold ``dicom``; return the number of instances added (1).

        Raises:
            InvalidDataset: if the instance does not meet the requirements, or belongs to
                another series (``enforce_single_series``) or study date
                (``enforce_single_study_date``) than the instances held.
        """
        if not self._checked(dicom) and not self.validate_image(dicom):
            raise InvalidDataset(f"{self._describe(dicom)} lacks a required tag or value.")
        if not self._state_based_validation(dicom):
            raise InvalidDataset(
                f"{self._describe(dicom)} is of another series or study date than those held."
            )
        self._hold(dicom)
        self._update_validation_state(dicom)  # only once held
        return 1

    def add_images(self, datasets: Iterable[Dataset]) -> int:
        """Add each of ``datasets``; return the number added.

        Raises:
            InvalidDataset: at the first dataset refused (those before it stay added).
        """
        return sum(self.add_image(dataset) for dataset in datasets)

    def clean_up(self) -> int:
        """Delete the files this input wrote to or loaded from its options'
        ``data_directory`` (never the node's spool files); return the number held."""
        for uid in sorted(self._owned_files()):
            self.paths.pop(uid).unlink(missing_ok=True)
        return self.images

    def offer(self, dataset: Dataset, path: Path | None = None, *, checked: bool = False) -> int:
        """Add ``dataset`` (stored at ``path``) through :meth:`add_image`, as the node does.

        With ``checked``, ``dataset`` already passed :meth:`accepts` (perhaps in a fuller
        form: the node offers headers without bulk data), so it is not checked again.
        """
        self._arriving = (dataset if checked else Dataset(), path)
        try:
            return self.add_image(dataset)
        finally:
            self._arriving = None

    def load(self, paths: Iterable[tuple[str, Path]], *, checked: bool = True) -> None:
        """Read the full datasets from ``paths`` and offer them (in the processing worker,
        where the node already ``checked`` them; or from the options' data directory)."""
        for _, path in paths:
            try:
                dataset = dcmread(path, force=not checked)  # files written by _write: no preamble
            except (InvalidDicomError, OSError) as exc:
                self.logger.warning(
                    "input %s: %s is unreadable: %s", type(self).__name__, path, exc
                )
                continue
            try:
                self.offer(dataset, path, checked=checked)
            except InvalidDataset as exc:
                self.logger.warning("input %s: %s", type(self).__name__, exc)

    def _checked(self, dicom: Dataset) -> bool:
        return self._arriving is not None and self._arriving[0] is dicom

    def _hold(self, dicom: Dataset) -> None:
        uid = str(dicom.SOPInstanceUID)
        path = self._arriving[1] if self._arriving is not None else None
        if path is None and self.container is not None:
            path = self._write(uid, dicom)  # an input used on its own, outside a node
        elif path is None and getattr(self.options, "lazy", False):
            raise IncorrectlyConfigured(
                f"Input {type(self).__name__}: lazy inputs need a data_directory in their options."
            )
        self._store(uid, dicom)
        if path is not None:
            self.paths[uid] = path

    def _write(self, uid: str, dicom: Dataset) -> Path:
        path = self.get_path(dicom)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            syntax = getattr(getattr(dicom, "file_meta", None), "TransferSyntaxUID", None)
            encoding: dict[str, bool] = {}
            if syntax is None:
                encoding = {"implicit_vr": True, "little_endian": True}
            dcmwrite(path, dicom, enforce_file_format=False, **encoding)
        return path

    def _folder(self) -> Path:
        """The data directory (a path, or an object with a ``path`` such as ``Directory``)."""
        return Path(getattr(self.container, "path", self.container))

    def _owned_files(self) -> list[str]:
        if self.container is None:
            return []
        folder = self._folder().resolve()
        return [uid for uid, path in self.paths.items() if path.resolve().parent == folder]

    def _store(self, uid: str, dicom: Dataset) -> None:
        self.data[uid] = dicom

    def _state_based_validation(self, dicom: Dataset) -> bool:
        return self._enforce_single_series(dicom) and self._enforce_date_requirement(dicom)

    def _enforce_single_series(self, dicom: Dataset) -> bool:
        if not self.enforce_single_series:
            return True
        if SERIES_INSTANCE_UID not in dicom:
            return False
        uid = self.single_series_uid
        return uid is None or uid == str(dicom[SERIES_INSTANCE_UID].value)

    def _enforce_date_requirement(self, dicom: Dataset) -> bool:
        if not self.enforce_single_study_date or self._study_date is None:
            return True
        return STUDY_DATE in dicom and str(dicom[STUDY_DATE].value) == self._study_date

    def _update_validation_state(self, dicom: Dataset) -> None:
        if self.enforce_single_series and self.single_series_uid is None:
            self.single_series_uid = str(dicom[SERIES_INSTANCE_UID].value)
        if self.enforce_single_study_date and self._study_date is None and STUDY_DATE in dicom:
            self._study_date = str(dicom[STUDY_DATE].value)

    def _describe(self, dicom: Dataset) -> str:
        uid = shorten(str(dicom.get("SOPInstanceUID", "(none)")))
        return f"Input {type(self).__name__}: instance {uid}"

    @property
    def study_date(self) -> str | None:
        """The study date (YYYYMMDD) the instances must have with
        ``enforce_single_study_date``: set by the first instance accepted, or by you."""
        return self._study_date

    @study_date.setter
    def study_date(self, value: str | None) -> None:
        self._study_date = value

    def __str__(self) -> str:
        try:
            valid: object = self.validate()
        except Exception as exc:  # a description must not fail
            valid = f"validate() raised {type(exc).__name__}"
        return f"{type(self).__name__} - {self.images} images - Valid: {valid}"

    # -- declaration checks ----------------------------------------------------------

    @classmethod
    def check_definition(cls, name: str) -> None:
        """Raise :class:`PipelineDefinitionError` naming the class and attribute if wrong."""
        where = f'Input "{name}" ({cls.__qualname__})'
        try:
            cls._check_attributes()
        except PipelineDefinitionError as exc:
            raise PipelineDefinitionError(f"{where}: {exc}") from exc
        if not callable(cls.image_grinder):
            raise PipelineDefinitionError(f"{where}: image_grinder is not callable.")

    @classmethod
    def _check_attributes(cls) -> None:
        if not isinstance(cls.required_tags, list | tuple | set):
            raise PipelineDefinitionError("required_tags must be a list of tags or keywords.")
        if not isinstance(cls.required_values, dict):
            raise PipelineDefinitionError("required_values must be a dict of tag -> value.")
        required_tags_of(cls, cls.required_tags, "required_tags")
        required_tags_of(cls, cls.required_values, "required_values")


class AbstractInputProxy(AbstractInput):
    """``InputA | InputB``: an input that turns into the first of ``type_options`` whose
    requirements its first instance meets. Until then it holds nothing and is not valid."""

    type_options: ClassVar[list[type[AbstractInput]]] = []
    _loads_on_creation = False

    def __init__(self, options: InputOptions | None = None, node_path: object = None) -> None:
        type(self)._check_options()
        super().__init__(options, node_path)

    def __len__(self) -> int:
        return 0

    def validate(self) -> bool:
        return False

    @classmethod
    def validate_image(cls, dicom: Dataset) -> bool:
        """Tell whether one of the options accepts ``dicom``."""
        return any(option.validate_image(dicom) for option in cls.type_options)

    def add_image(self, dicom: Dataset) -> int:
        if not self._enforce_date_requirement(dicom):
            raise InvalidDataset(f"{self._describe(dicom)} is of another study date.")
        option = self.choose(dicom)
        if option is None:
            raise InvalidDataset(f"{self._describe(dicom)} meets the requirements of no option.")
        return self.become(option).add_image(dicom)

    @classmethod
    def choose(cls, dicom: Dataset) -> type[AbstractInput] | None:
        """The first option whose requirements ``dicom`` meets (``None`` if none does)."""
        return next((o for o in cls.type_options if o.validate_image(dicom)), None)

    def become(self, option: type[AbstractInput]) -> AbstractInput:
        """Turn into an empty ``option`` input with the same options; return ``self``."""
        options, arriving = self.options, self._arriving
        self.__class__ = option  # type: ignore[assignment]
        option.__init__(self, options)
        self._arriving = arriving
        return self

    @classmethod
    def _check_options(cls) -> None:
        options = cls.type_options
        if not options:
            raise IncorrectlyConfigured(f"{cls.__qualname__} has no input to choose from.")
        for option in options:
            if not (isinstance(option, type) and issubclass(option, AbstractInput)):
                raise IncorrectlyConfigured(
                    f"{cls.__qualname__}: {option!r} is not an AbstractInput subclass."
                )
        if len({option.enforce_single_study_date for option in options}) > 1:
            raise IncorrectlyConfigured(
                f"{cls.__qualname__}: its inputs differ in enforce_single_study_date."
            )

    @classmethod
    def _check_attributes(cls) -> None:
        try:
            cls._check_options()
        except IncorrectlyConfigured as exc:
            raise PipelineDefinitionError(str(exc)) from exc
        for option in cls.type_options:
            option._check_attributes()


def either(first: Any, second: Any) -> type[AbstractInputProxy]:
    """The input class satisfied by ``first`` or ``second`` (flattening other proxies)."""
    options = [*_options_of(first), *_options_of(second)]
    names = " | ".join(option.__name__ for option in options)
    enforcing = any(option.enforce_single_study_date for option in options)
    attributes = {"type_options": options, "enforce_single_study_date": enforcing}
    return type(f"Either[{names}]", (AbstractInputProxy,), attributes)


def _options_of(item: Any) -> list[type[AbstractInput]]:
    if isinstance(item, type) and issubclass(item, AbstractInputProxy):
        return list(item.type_options)
    return [item]


def required_tags_of(cls: type, tags: Iterable[TagLike], attribute: str = "") -> list[BaseTag]:
    """``tags`` as tags; raise :class:`IncorrectlyConfigured` naming the attribute if one is
    not (with ``attribute`` empty: naming ``cls``, as when an instance is checked)."""
    try:
        return [parse_tag(tag) for tag in tags]
    except PipelineDefinitionError as exc:
        raise IncorrectlyConfigured(f"{attribute or cls.__qualname__}: {exc}") from exc


def _value_matches(cls: type, dataset: Dataset, tag: BaseTag, expected: Any) -> bool:
    element = dataset.get(tag)
    if element is None:
        return False
    value = element.value  # a value pydicom cannot decode raises here, to the caller
    try:
        return bool(get_validator_for_value(expected)(value))
    except Exception as exc:  # a validator's own failure is a mismatch, not a crash
        logger.warning(
            "input %s: the validator of %s raised %s; the instance does not match",
            cls.__qualname__,
            tag,
            exc,
        )
        return False
