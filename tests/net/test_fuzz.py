"""A bounded, seeded fuzz run of the receive path: every case ends, nothing escapes.

Thousands of mutated associations (request, command set, dataset, framing, PDU order)
against a running node (lean receiver, real decoding and spool). Each must end in a
response, an abort, a rejection or a close after the peer's own end, never a hang
nor an exception escaping an association thread or failing a store unexpectedly
(0xC001); afterwards dcmtk's ``echoscu`` is
still answered and the node's memory has not grown beyond a bound. ``bench/fuzz.py``
runs longer.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzzing import FuzzedPipeline, Generator, resident_bytes, run

from dicomflow.engine.node import Node

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

SEED = 20261206
CASES = 4000
MIB = 1 << 20


@pytest.fixture
def fuzzed_node(tmp_path: Path) -> Iterator[Node]:
    pipeline = FuzzedPipeline(
        start=False,
        port=0,
        data_directory=tmp_path / "data",
        queue_workers=0,
        fsync=False,
        web_enabled=False,
        maximum_held_bytes=64 * MIB,
        log_level="CRITICAL",
    )
    pipeline.open(blocking=False, configure_logs=False)
    yield pipeline.node
    pipeline.close()


def echoscu(port: int) -> subprocess.CompletedProcess[str]:
    command = ["echoscu", "-aet", "FUZZER", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_mutated_associations_all_end_and_the_node_keeps_serving(fuzzed_node: Node) -> None:
    port = fuzzed_node.port
    assert echoscu(port).returncode == 0
    before = resident_bytes()
    server = fuzzed_node.scp._server  # type: ignore[union-attr]
    outcomes = run(port, server, Generator(SEED), CASES)
    grown = resident_bytes() - before
    print(
        f"\n{outcomes.cases} cases: {dict(outcomes.counts)}; statuses {dict(outcomes.statuses)};"
        f" targets {dict(outcomes.targets)}; exceptions {len(outcomes.exceptions)};"
        f" RSS +{grown / MIB:.0f} MiB"
    )
    assert outcomes.cases == CASES
    assert outcomes.hangs == []
    assert outcomes.exceptions == [], outcomes.exceptions[0]
    assert "0xC001" not in outcomes.statuses  # an unexpected error while storing
    assert echoscu(port).returncode == 0
    assert grown < 96 * MIB
