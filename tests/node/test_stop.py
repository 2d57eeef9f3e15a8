"""Stopping a node: every part stops, and a slow part is named in the log."""

import logging
import time
from typing import Any

import pytest
from sample_pipelines import CopyPipeline

from dicomflow.engine import node as node_module
from dicomflow.engine.outbox import Outbox


def test_a_part_slow_to_stop_is_named_in_a_warning(
    make_node: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    node = make_node(CopyPipeline)
    monkeypatch.setattr(node_module, "SLOW_STOP_S", 0.05)
    stop = Outbox.stop

    def slow_stop(self: Outbox) -> None:
        time.sleep(0.2)
        stop(self)

    monkeypatch.setattr(Outbox, "stop", slow_stop)
    with caplog.at_level(logging.INFO, logger="dicomflow.engine.node"):
        node.stop()
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping the")]
    assert "stopping the outbox took 0.2 s" in slow, slow
    assert node.scp is None
    assert any("stopped" in r.getMessage() for r in caplog.records)
