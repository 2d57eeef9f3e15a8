"""The pipeline library's pipeline-level API under ``dicomflow``: class attributes,
``filter()``/``post_init()``, the nested ``Processor``, ``InputContainer``, open/close.

The processing workers import this module by its file to find the pipelines, so it
imports nothing from ``tests/`` and its pipelines are module-level classes.
"""

import importlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.constants import DICOMNODE_LOGGER_NAME
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.grinders import list_grinder
from dicomflow.engine.node import wait_until
from dicomflow.lib.exceptions import IncorrectlyConfigured
from dicomflow.lib.logging import LoggerConfig, get_logger, set_logger
from dicomflow.lib.parallelism import ProcessLikeThread
from dicomflow.lib.utils import human_readable_byte_count, is_picklable, str2bool
from dicomflow.logs import configure_logging
from dicomflow.node import attributes
from dicomflow.server.input import AbstractInput
from dicomflow.server.input_container import InputContainer
from dicomflow.server.nodes import AbstractPipeline, AbstractQueuedPipeline
from dicomflow.server.processor import AbstractProcessor

MARK = "seen by the migrated processor"


class AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]
    image_grinder = staticmethod(list_grinder)


class NoOutputProcessor(AbstractProcessor):
    pass


class BareNode(AbstractPipeline):
    """The original's own test node: no inputs, a Processor without process()."""

    Processor = NoOutputProcessor
    log_output = None
    port = 0


class MigratedPipeline(AbstractPipeline):
    """Marks every instance it admits and answers its caller's known endpoint."""

    ae_title = "MIGRATED"
    input = {"ct": AnyInstance}
    require_calling_aet = ["MODALITY"]
    error_on_rejected_dataset = True
    my_constant = "users add their own attributes"

    def filter(self, dataset: Dataset) -> bool:
        self.logger.info("filter saw instance %s", dataset.InstanceNumber)
        if dataset.PatientID == "RAISE":
            raise ValueError("the filter cannot decide")
        return int(dataset.InstanceNumber) != 3  # the third instance is not admitted

    def post_init(self) -> None:
        self.post_init_ran = True

    class Processor(AbstractProcessor):
        def process(self, input_container: InputContainer) -> Any:
            caller = input_container.responding_address
            datasets = input_container.datasets["ct"]
            self.logger.info("processing %d instance(s) for %s", len(datasets), caller)
            for dataset in datasets:
                dataset.SeriesDescription = MARK
                dataset.ImageComments = f"{caller.ae_title} {caller.port}" if caller else "-"
            return datasets


class SilentPipeline(AbstractPipeline):
    """A Processor without process(): its rounds succeed with no output."""

    input = {"ct": AnyInstance}
    Processor = NoOutputProcessor


class KnownCallerPipeline(MigratedPipeline):
    known_endpoints = {"MODALITY": Address("127.0.0.1", 11112, "MODALITY")}
    log_output = Path("node.log")  # relative to the working directory, as in the original
    disable_pynetdicom_logger = True


class UnknownCallerPipeline(MigratedPipeline):
    default_response_port = 4242
    error_on_rejected_dataset = False


@pytest.fixture
def pipelines(tmp_path: Path) -> Iterator[list[AbstractPipeline]]:
    """Pipelines a test opened; closed afterwards, the log set-up reset."""
    opened: list[AbstractPipeline] = []
    yield opened
    for pipeline in opened:
        if pipeline.is_open:
            pipeline.close()
    configure_logging(stderr=False)
    logging.getLogger("pynetdicom").setLevel(logging.NOTSET)


def opened(pipelines: list[AbstractPipeline], pipeline: AbstractPipeline) -> AbstractPipeline:
    pipeline.open(blocking=False)
    pipelines.append(pipeline)
    return pipeline


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("dicomflow.server.nodes", ["AbstractPipeline", "AbstractQueuedPipeline"]),
        ("dicomflow.server.processor", ["AbstractProcessor"]),
        ("dicomflow.server.input_container", ["InputContainer"]),
        ("dicomflow.server.pipeline_tree", ["InputContainer"]),
        ("dicomflow.constants", ["DICOMNODE_LOGGER_NAME", "DICOMNODE_IMPLEMENTATION_UID"]),
        ("dicomflow.lib.utils", ["is_picklable", "str2bool", "spawn_thread", "name"]),
        ("dicomflow.lib.logging", ["get_logger", "log_traceback"]),
    ],
)
def test_original_module_paths_name_dicomflows_objects(module: str, names: list[str]) -> None:
    face = importlib.import_module(module)
    for name in names:
        assert hasattr(face, name), f"{module}.{name}"
    node = importlib.import_module("dicomflow.node")
    for name in set(names) & set(node.__all__):
        assert getattr(face, name) is getattr(node, name)


def test_input_container_keeps_the_original_constructor(tmp_path: Path) -> None:
    bare = InputContainer({"key": None})
    assert "key" in bare and "not key" not in bare and bare["key"] is None
    assert bare.responding_address is None and dict(bare.datasets) == {}

    folder = InputContainer({}, {}, tmp_path)  # the original passed a folder here
    assert folder.paths == tmp_path and dict(folder.datasets) == {}

    given = [Dataset()]
    assert InputContainer({"CT": 1}, {"CT": given}).datasets["CT"] is given

    paths = write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct")
    read = InputContainer({"CT": 1}, paths={"CT": paths}).datasets["CT"]
    assert [str(d.SOPInstanceUID) for d in read] == [
        str(pydicom.dcmread(p).SOPInstanceUID) for p in paths
    ]


@pytest.mark.parametrize("attribute", sorted(attributes.REFUSED))
def test_an_unsupported_original_attribute_is_an_error_naming_it(attribute: str) -> None:
    pipeline_class = type("Unsupported", (BareNode,), {attribute: object()})
    with pytest.raises(IncorrectlyConfigured, match=rf"Unsupported\.{attribute} is not supported"):
        pipeline_class()


@pytest.mark.parametrize(("attribute", "value"), [("log_when", "midnight"), ("log_level", 15)])
def test_an_unsupported_value_is_an_error_naming_the_attribute(
    attribute: str, value: object
) -> None:
    pipeline_class = type("OddValue", (BareNode,), {attribute: value})
    with pytest.raises(IncorrectlyConfigured, match=rf"OddValue\.{attribute} = "):
        pipeline_class()


def test_original_attributes_become_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Configured(BareNode):
        data_directory = tmp_path / "archive"
        log_level = logging.DEBUG
        require_calling_aet = ["CT1", "PACS"]
        require_called_aet = False
        log_when = "w0"  # what dicomflow does anyway
        processing_directory = tmp_path / "processing"
        my_own_setting = 42

    with caplog.at_level(logging.INFO, logger="dicomflow.node.attributes"):
        settings = Configured().settings
    assert settings.data_directory == tmp_path / "archive"
    assert settings.log_level == "DEBUG"
    assert settings.allowed_ae_titles == ["CT1", "PACS"]
    assert settings.require_called_ae_title is False
    assert "Configured.processing_directory: not needed with dicomflow" in caplog.text
    assert AbstractQueuedPipeline.workers == 1 and BareNode.workers is None


def test_two_names_for_the_data_directory_must_agree(tmp_path: Path) -> None:
    class Twice(BareNode):
        data_directory = tmp_path / "a"
        root_data_directory = tmp_path / "b"

    with pytest.raises(IncorrectlyConfigured, match=r"Twice\.data_directory .* set one"):
        Twice()


def test_the_bare_abstract_processor_is_refused() -> None:
    missing = type("Missing", (BareNode,), {"Processor": AbstractProcessor})
    with pytest.raises(IncorrectlyConfigured, match="must define a nested class Processor"):
        missing()


def test_open_and_close_log_misuse_on_the_pipeline_logger(
    tmp_path: Path, pipelines: list[AbstractPipeline], caplog: pytest.LogCaptureFixture
) -> None:
    BareNode(data_directory=tmp_path / "data")
    node = BareNode(data_directory=tmp_path / "data")
    assert node.logger is get_logger() and node.logger.name == DICOMNODE_LOGGER_NAME
    assert [type(h) for h in node.logger.handlers] == [logging.NullHandler]  # log_output None
    with caplog.at_level(logging.INFO, logger=DICOMNODE_LOGGER_NAME):
        node.close()
        opened(pipelines, node)
        node.open(blocking=False)
    assert "Attempted to close an closed node" in caplog.text
    assert "Attempted to open a node, that was already open" in caplog.text
    assert node.is_open and node.node.port > 0
    node.close()
    assert not node.is_open and node.node is None
    with node.open_cm():
        assert node.is_open
    assert not node.is_open


def test_set_logger_sets_up_a_users_own_logger(tmp_path: Path) -> None:
    own = logging.getLogger("test_dicomnode_pipeline.own")
    set_logger(own, LoggerConfig(log_level=logging.INFO, log_output=tmp_path / "own.log"))
    own.debug("not at INFO")
    own.info("written to the file")
    own.handlers[0].flush()
    text = (tmp_path / "own.log").read_text()
    assert "written to the file" in text and "not at INFO" not in text
    set_logger(own, LoggerConfig(log_output=None))
    assert [type(h) for h in own.handlers] == [logging.NullHandler] and not own.propagate


def test_a_thread_like_a_process_returns_its_result() -> None:
    thread = ProcessLikeThread(target=lambda value: value * 2, args=(21,))
    thread.start()
    assert thread.join() == 42 and thread.exception is None
    failing = ProcessLikeThread(target=lambda: 1 / 0)
    failing.start()
    assert failing.join() is None and isinstance(failing.exception, ZeroDivisionError)


def test_unpicklable_on_load_is_not_picklable() -> None:
    assert is_picklable("text") and not is_picklable(lambda: None)
    assert not is_picklable(BrokenOnLoad())
    assert str2bool("Y") and not str2bool("0") and human_readable_byte_count(1536) == "1.50 kB"


class BrokenOnLoad:
    def __reduce__(self) -> Any:
        return (int, ("not a number",))


def echoscu(port: int, aet: str) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-aet", aet, "-aec", "MIGRATED", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def store_statuses(port: int, files: list[Path], ae_title: str = "MIGRATED") -> str:
    """dcmtk storescu's verbose report of sending ``files`` as MODALITY (one association)."""
    command = ["storescu", "-v", "-aet", "MODALITY", "-aec", ae_title, "127.0.0.1", str(port)]
    sent = subprocess.run(command + [str(p) for p in files], capture_output=True, text=True)
    return (sent.stdout + sent.stderr).lower()


def test_a_migrated_pipeline_runs_with_its_original_hooks(
    tmp_path: Path, storescp: Any, pipelines: list[AbstractPipeline], monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    pipeline = KnownCallerPipeline(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=[storescp.endpoint()],
        quiet_period_s=0.2,
    )
    assert pipeline.post_init_ran
    port = opened(pipelines, pipeline).node.port
    assert logging.getLogger("pynetdicom").level > logging.CRITICAL

    refused = echoscu(port, "OTHER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    assert echoscu(port, "MODALITY").returncode == 0
    other = ["storescu", "-aet", "OTHER", "-aec", "MIGRATED", "127.0.0.1", str(port)]
    one = write_series(make_ct_series(1, rows=8, columns=8), tmp_path / "other")
    assert subprocess.run([*other, str(one[0])], capture_output=True).returncode != 0
    assert pipeline.node.counters.received == 0

    files = write_series(make_ct_series(4, rows=8, columns=8), tmp_path / "series")
    statuses = store_statuses(port, files)
    assert statuses.count("(warning: elementsdiscarded)") == 1  # 0xB006: the filtered one
    assert statuses.count("store response (success)") == 3
    assert wait_until(lambda: len(storescp.files()) == 3, 60), "the processed instances"
    results = [pydicom.dcmread(path) for path in storescp.files()]
    assert {int(d.InstanceNumber) for d in results} == {1, 2, 4}
    assert {d.SeriesDescription for d in results} == {MARK}
    assert {d.ImageComments for d in results} == {"MODALITY 11112"}  # from known_endpoints
    assert "filter saw instance 3" in (tmp_path / "node.log").read_text()


def test_without_known_endpoints_the_caller_answers_on_the_default_port(
    tmp_path: Path, storescp: Any, pipelines: list[AbstractPipeline]
) -> None:
    pipeline = UnknownCallerPipeline(
        port=0, data_directory=tmp_path / "data", endpoints=[storescp.endpoint()]
    )
    port = opened(pipelines, pipeline).node.port
    files = write_series(make_ct_series(3, rows=8, columns=8), tmp_path / "series")
    assert store_statuses(port, files).count("store response (success)") == 3
    raising = write_series(make_ct_series(1, patient_id="RAISE"), tmp_path / "raising")
    assert "store response (error: " in store_statuses(port, raising)  # refused, not kept
    assert wait_until(lambda: len(storescp.files()) == 2, 60), "the processed instances"
    results = [pydicom.dcmread(path) for path in storescp.files()]
    assert {d.ImageComments for d in results} == {"MODALITY 4242"}
    assert pipeline.node.counters.received == 2


SCRIPT = """
from dicomflow.server.nodes import AbstractPipeline
from dicomflow.server.processor import AbstractProcessor

class Pipeline(AbstractPipeline):
    port = PORT
    data_directory = "DATA"
    log_output = None

    class Processor(AbstractProcessor):
        pass

    def post_init(self):
        print("post_init", flush=True)

if __name__ == "__main__":
    node = Pipeline()
    print("constructed", flush=True)
    node.open()
    print("served", flush=True)
"""


def test_a_script_keeping_its_pipeline_serves_from_open(tmp_path: Path) -> None:
    import signal
    import sys

    from support import free_port, wait_for_port

    port = free_port()
    script = tmp_path / "node.py"
    script.write_text(
        SCRIPT.replace("PORT", str(port)).replace('"DATA"', repr(str(tmp_path / "data")))
    )
    node = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port)
    finally:
        node.send_signal(signal.SIGINT)
        stdout, stderr = node.communicate(timeout=30)
    assert node.returncode == 0, stderr
    assert stdout.split() == ["post_init", "constructed", "served"]
    assert "already open" not in stderr


def test_no_inputs_or_no_process_means_no_output_not_an_error(
    tmp_path: Path, pipelines: list[AbstractPipeline]
) -> None:
    files = write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "series")
    bare = opened(pipelines, BareNode(data_directory=tmp_path / "bare"))
    assert "store response (success)" in store_statuses(bare.node.port, files, ae_title="DICOMFLOW")
    assert bare.node.counters.discarded == 2 and bare.node.counters.received == 0

    silent = opened(pipelines, SilentPipeline(port=0, data_directory=tmp_path / "silent"))
    store_statuses(silent.node.port, files, ae_title="DICOMFLOW")
    counters = silent.node.counters
    assert wait_until(lambda: counters.rounds_succeeded == 1, 60), "the round"
    assert counters.rounds_failed == 0 and counters.delivered == 0


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ({"log_output": None}, (None, None)),
        ({"log_output": "stdout"}, (None, "stdout")),
        ({"log_output": "node.log"}, (Path("node.log"), None)),
        ({"log_output": Path("node.log")}, (Path("node.log"), None)),
        ({"log_path": "node.log"}, (Path("node.log"), "stderr")),
        ({}, (None, "stderr")),
    ],
)
def test_log_output_chooses_where_the_log_goes(
    declared: dict[str, Any], expected: tuple[Path | None, str | None]
) -> None:
    import sys

    pipeline_class = type("Logged", (AbstractPipeline,), declared)
    path, stream = attributes.log_destination(pipeline_class)
    streams = {None: None, "stdout": sys.stdout, "stderr": sys.stderr}
    assert (path, stream) == (expected[0], streams[expected[1]])


@pytest.mark.parametrize(
    "declared", [{"log_output": 42}, {"log_output": "a.log", "log_path": "b.log"}]
)
def test_a_log_output_dicomflow_cannot_use_is_an_error(declared: dict[str, Any]) -> None:
    with pytest.raises(IncorrectlyConfigured, match=r"Logged\.log_output"):
        attributes.log_destination(type("Logged", (AbstractPipeline,), declared))
