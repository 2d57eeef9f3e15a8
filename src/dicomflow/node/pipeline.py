"""``AbstractPipeline``: a DICOM node declared as a class.

Subclass it, set the class attributes, declare inputs and a nested
``Processor``, then ``MyPipeline().open()`` (or ``dicomflow serve file.py``).
"""

import contextlib
import dis
import inspect
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.dicom.tags import TagLike, parse_tag
from dicomflow.engine.assembly import run
from dicomflow.engine.protocols import RoundWork
from dicomflow.errors import IncorrectlyConfigured, PipelineDefinitionError
from dicomflow.logs import configure_logging
from dicomflow.net import storage as status
from dicomflow.node import attributes
from dicomflow.node.input import AbstractInput, InputOptions
from dicomflow.node.processor import AbstractProcessor, LegacyProcessor
from dicomflow.node.round_processing import run_round
from dicomflow.settings import NodeSettings, build_settings, format_endpoint

logger = logging.getLogger(__name__)

PIPELINE_LOGGER = "dicomflow"
"""The logger of ``pipeline.logger``: the parent of every dicomflow logger (as the pipeline
library's one logger was), so listening on it hears the whole package; its records go to
the node's configured log."""

SETTING_ATTRIBUTES = {
    "ip": "ip",
    "port": "port",
    "ae_title": "ae_title",
    "root_data_directory": "data_directory",
    "log_path": "log_path",
    "log_level": "log_level",
    "allowed_ae_titles": "allowed_ae_titles",
    "allowed_ips": "allowed_ips",
    "quiet_period_s": "quiet_period_s",
    "processing_timeout_s": "processing_timeout_s",
    "workers": "workers",
    "export_retries": "export_retries",
    "export_backoff_s": "export_backoff_s",
    "outbox_retry_interval_s": "outbox_retry_interval_s",
    "keep_inputs": "keep_inputs",
}


class AbstractPipeline:
    """Subclass and set the attributes below; see the README's reference."""

    ip: ClassVar[str | None] = None
    port: ClassVar[int | None] = None
    ae_title: ClassVar[str] = "DICOMFLOW"
    input: ClassVar[dict[str, type[AbstractInput]]] = {}
    endpoints: ClassVar[list[Address]] = []
    root_data_directory: ClassVar[str | Path | None] = None
    patient_identifier_tag: ClassVar[TagLike] = 0x00100020
    log_path: ClassVar[str | Path | None] = None
    log_level: ClassVar[str | int | None] = None
    allowed_ae_titles: ClassVar[list[str] | None] = None
    allowed_ips: ClassVar[list[str] | None] = None
    quiet_period_s: ClassVar[float | None] = None
    processing_timeout_s: ClassVar[float | None] = None
    workers: ClassVar[int | None] = None
    export_retries: ClassVar[int | None] = None
    export_backoff_s: ClassVar[float | None] = None
    outbox_retry_interval_s: ClassVar[float | None] = None
    keep_inputs: ClassVar[bool | None] = None
    Processor: ClassVar[type[AbstractProcessor]] = LegacyProcessor
    # the original library's names (see dicomflow.node.attributes for the others)
    data_directory: ClassVar[str | Path | None] = None
    require_calling_aet: ClassVar[list[str]] = []
    require_called_aet: ClassVar[bool] = True
    known_endpoints: ClassVar[dict[str, Address]] = {}
    default_response_port: ClassVar[int] = 104
    error_on_rejected_dataset: ClassVar[bool] = True
    disable_pynetdicom_logger: ClassVar[bool] = False

    def __init__(self, *, start: bool | None = None, **overrides: Any) -> None:
        check_pipeline(type(self))
        self.settings = pipeline_settings(type(self), **overrides)
        self.logger = logging.getLogger(PIPELINE_LOGGER)
        if attributes.declared(type(self), "log_output") and type(self).log_output is None:  # type: ignore[attr-defined]
            _add_null_handler(self.logger)
        self.node: Any = None
        self.is_open = False
        self._served = False  # a blocking open() has ended: the node does not reopen
        if not getattr(self, "_in_worker", False):
            self.post_init()
        if start or (start is None and _serves_on_construction(self)):
            self.open()

    def open(
        self, blocking: bool = True, configure_logs: bool = True, consumer: Any = None
    ) -> None:
        """Start the node; if ``blocking``, serve until SIGINT/SIGTERM, then close.

        ``consumer`` adds registry services (a ``dicomflow.services`` scheduler).
        """
        if self.is_open or self._served:
            self.logger.error("Attempted to open a node, that was already open")
            return
        if configure_logs:
            self._configure_logging()
        screened = type(self).filter is not AbstractPipeline.filter
        discarded = status.ELEMENTS_DISCARDED if self.error_on_rejected_dataset else status.SUCCESS
        started = run(
            type(self),
            self.settings,
            consumer=consumer,
            admit=self.filter if screened else None,
            discarded_status=discarded,
            blocking=blocking,
            on_start=self._opened,
            on_stop=lambda _node: self.close(),
        )
        if not blocking:
            self._opened(started)
            return
        self._served = True

    def _opened(self, node: Any) -> None:
        self.node = node
        self.is_open = True

    @classmethod
    def _input_options(cls, ae_title: str) -> InputOptions:
        """The options each input of a patient is made with, in a node."""
        return InputOptions(ae_title=ae_title)

    @classmethod
    def _run_round(cls, work: RoundWork) -> int:
        """Process one round in its queue job (see :mod:`dicomflow.node.round_processing`)."""
        return run_round(cls, work)

    def close(self) -> None:
        """Stop the node (pending work stays on disk and resumes at the next start)."""
        if not self.is_open:
            self.logger.error("Attempted to close an closed node")
            return
        self.is_open = False
        if self.node is not None:
            self.node.stop()
            self.node = None

    @contextlib.contextmanager
    def open_cm(self) -> Iterator[None]:
        """``with pipeline.open_cm():`` serves (not blocking) inside the block."""
        self.open(blocking=False)
        try:
            yield
        finally:
            self.close()

    def filter(self, dataset: Dataset) -> bool:
        """Override to decide, before an instance is kept, whether the node takes it.

        An instance it refuses is discarded and answered with status 0xB006 (0x0000
        if ``error_on_rejected_dataset`` is false); one it raises on is refused.
        """
        return True

    def post_init(self) -> None:
        """Override to run code once the pipeline is constructed, before it serves."""

    def _configure_logging(self) -> None:
        log_path, stream = attributes.log_destination(type(self))
        if self.settings.log_path is not None:
            log_path = self.settings.log_path  # an override given to the constructor
        configure_logging(
            self.settings.log_level, log_path, stderr=stream is not None, stream=stream
        )
        level = attributes.pynetdicom_level(type(self))
        if level is not None:
            logging.getLogger("pynetdicom").setLevel(level)


def _add_null_handler(pipeline_logger: logging.Logger) -> None:
    """``log_output = None``: the pipeline's logger has a handler that drops its records
    (they still reach the node's handlers, if any)."""
    if not any(isinstance(h, logging.NullHandler) for h in pipeline_logger.handlers):
        pipeline_logger.addHandler(logging.NullHandler())


def pipeline_settings(pipeline_class: type[AbstractPipeline], **overrides: Any) -> NodeSettings:
    """Build node settings from the class attributes, overridden by ``overrides``."""
    values = {
        setting: getattr(pipeline_class, attribute)
        for attribute, setting in SETTING_ATTRIBUTES.items()
    }
    if pipeline_class.endpoints:
        values["endpoints"] = [format_endpoint(address) for address in pipeline_class.endpoints]
    if isinstance(values["log_level"], int):
        values.pop("log_level")
    values.update(attributes.settings_values(pipeline_class))
    values.update(overrides)
    return build_settings(**values)


def check_pipeline(pipeline_class: type[AbstractPipeline]) -> None:
    """Raise :class:`PipelineDefinitionError` naming the class and attribute if wrong."""
    name = pipeline_class.__qualname__
    inputs = pipeline_class.input
    if not isinstance(inputs, dict):
        raise PipelineDefinitionError(f"{name}.input must be a dict of name -> input class.")
    attributes.check_attributes(pipeline_class)
    for key, value in inputs.items():
        if not (inspect.isclass(value) and issubclass(value, AbstractInput)):
            raise PipelineDefinitionError(
                f'{name}.input["{key}"] must be an AbstractInput subclass (the class, not an '
                f"instance); got {value!r}."
            )
        value.check_definition(key)
    _check_endpoints(pipeline_class)
    _check_processor(pipeline_class)
    try:
        parse_tag(pipeline_class.patient_identifier_tag)
    except PipelineDefinitionError as exc:
        raise PipelineDefinitionError(f"{name}.patient_identifier_tag: {exc}") from exc


def _check_endpoints(pipeline_class: type[AbstractPipeline]) -> None:
    endpoints = pipeline_class.endpoints
    name = pipeline_class.__qualname__
    if not isinstance(endpoints, list | tuple):
        raise PipelineDefinitionError(f"{name}.endpoints must be a list of Address.")
    for index, address in enumerate(endpoints):
        if not isinstance(address, Address):
            raise PipelineDefinitionError(
                f"{name}.endpoints[{index}] must be an Address(ip, port, ae_title); "
                f"got {address!r}."
            )
        try:
            address.validate()
        except ValueError as exc:
            raise PipelineDefinitionError(f"{name}.endpoints[{index}]: {exc}") from exc


def _check_processor(pipeline_class: type[AbstractPipeline]) -> None:
    name = pipeline_class.__qualname__
    processor = pipeline_class.Processor
    if not (inspect.isclass(processor) and issubclass(processor, AbstractProcessor)):
        raise PipelineDefinitionError(f"{name}.Processor must be an AbstractProcessor subclass.")
    legacy = processor is LegacyProcessor
    if processor is AbstractProcessor or (
        legacy and not callable(getattr(pipeline_class, "process", None))
    ):
        raise IncorrectlyConfigured(
            f"{name} must define a nested class Processor(AbstractProcessor) with process()."
        )


def _serves_on_construction(pipeline: AbstractPipeline) -> bool:
    """True for the seed style ``MyPipeline()`` alone at the bottom of ``python file.py``;
    false for ``node = MyPipeline()`` or ``MyPipeline().open()``, which call ``open()``."""
    return _constructed_as_script(type(pipeline)) and _constructed_and_discarded(pipeline)


def _constructed_as_script(pipeline_class: type) -> bool:
    if pipeline_class.__module__ != "__main__":
        return False
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    return main_file is not None and Path(main_file).resolve() == Path(sys.argv[0]).resolve()


def _constructed_and_discarded(pipeline: AbstractPipeline) -> bool:
    """Whether the statement that constructed ``pipeline`` throws the result away."""
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_locals.get("self") is not pipeline:
        frame = frame.f_back  # up to the constructor
    while frame is not None and frame.f_locals.get("self") is pipeline:
        frame = frame.f_back  # past it (and the subclasses' __init__ calling super())
    if frame is None:
        return False
    following = (i for i in dis.get_instructions(frame.f_code) if i.offset > frame.f_lasti)
    return getattr(next(following, None), "opname", "") == "POP_TOP"


class AbstractQueuedPipeline(AbstractPipeline):
    """A pipeline whose rounds are processed one at a time (one worker), for
    processing that holds a single resource such as a GPU."""

    workers: ClassVar[int | None] = 1
