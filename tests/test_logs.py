"""The node's log file: values chosen by peers cannot forge records."""

import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomflow.logs import configure_logging, escaped
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor
from support import association_request, wait_for

RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR)")
FORGED = "2026-01-01 00:00:00,000 ERROR   dicomflow: FORGED"


class ListeningPipeline(AbstractPipeline):
    input = {"any": AbstractInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: object) -> None:
            return None


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The log file of the process, set up as ``dicomflow serve`` does; undone afterwards."""
    root = logging.getLogger()
    level = root.level
    path = tmp_path / "node.log"
    configure_logging("INFO", path, stderr=False)
    yield path
    configure_logging(logging.getLevelName(level), None, stderr=False)


def associate(port: int, called: bytes, calling: bytes) -> bytes:
    """Send an A-ASSOCIATE-RQ; the PDU type of the answer (A-ABORT, A-ASSOCIATE-RJ, ...)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(association_request(called, calling))
        return connection.recv(1)


@pytest.mark.parametrize(
    ("called", "calling"),
    [
        pytest.param(b"DICOMFLOW", b"EVIL\n" + FORGED.encode()[:10], id="calling-newline"),
        pytest.param(b"DI\r\nCOMFLOW", b"EVIL", id="called-newline"),
        pytest.param(b"OTHER\x1b[2J", b"EVIL", id="called-escape-sequence"),
    ],
)
def test_an_ae_title_with_control_characters_cannot_forge_a_log_line(
    log_file: Path, make_node, called: bytes, calling: bytes
) -> None:
    node = make_node(ListeningPipeline)
    answer = associate(node.port, called, calling)
    assert answer in (b"\x03", b"\x07")  # rejected or aborted, never accepted
    wait_for(lambda: "127.0.0.1" in log_file.read_text(), 5, "the refusal in the log")
    lines = log_file.read_text().splitlines()
    assert all(RECORD_START.match(line) for line in lines), lines
    assert not any("\x1b" in line for line in lines)


def test_an_error_text_with_a_newline_stays_in_its_record(log_file: Path) -> None:
    try:
        raise ValueError("bad value\n" + FORGED)
    except ValueError as exc:
        logging.getLogger("dicomflow.test").exception("instance refused: %s", exc)
    lines = log_file.read_text().splitlines()
    assert len([line for line in lines if RECORD_START.match(line)]) == 1
    assert lines[0].endswith("instance refused: bad value\\n" + FORGED)
    assert all(line.startswith("  ") for line in lines[1:])  # the traceback, indented


def test_escaped_keeps_printable_text_and_escapes_the_rest() -> None:
    assert escaped("CT^Head 1.2.3 é") == "CT^Head 1.2.3 é"
    assert escaped("A\nB\r\tC\x00\x1b\x85\u2028") == "A\\nB\\r\\tC\\x00\\x1b\\x85\\u2028"


def test_the_log_file_and_the_folders_made_for_it_are_private(tmp_path: Path) -> None:
    log_path = tmp_path / "data" / "logs" / "node.log"
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        configure_logging("INFO", log_path, stderr=False)
        logging.getLogger("dicomflow.test").warning("study 1.2.3 from PEER")
        for handler in root.handlers:
            handler.flush()
        assert log_path.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "data" / "logs").stat().st_mode & 0o777 == 0o700
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
                handler.close()
