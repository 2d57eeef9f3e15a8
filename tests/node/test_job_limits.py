"""The node's settings for its jobs reach them: a memory limit and an output cap."""

import json
import logging
import re
from pathlib import Path

import pytest
from sample_pipelines import ChattyPipeline, HungryPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import storescu, wait_for


def send(port: int, folder: Path) -> None:
    storescu(port, write_series(make_ct_series(2, rows=8, columns=8), folder))


def test_a_round_over_job_memory_limit_bytes_fails_saying_so(make_node, tmp_path: Path) -> None:
    node = make_node(HungryPipeline, job_memory_limit_bytes=384 * 1024 * 1024)
    send(node.port, tmp_path / "ct")
    wait_for(lambda: node.counters.rounds_failed == 1, 60, "the round to fail")

    [failed] = (tmp_path / "data" / "failed").iterdir()
    error = json.loads((failed / "error.json").read_text())["error"]
    assert "exceeded its memory limit of 402653184 bytes" in error
    assert "job_memory_limit_bytes" in error
    assert len(list(failed.glob("instances/*.dcm"))) == 2


def test_a_round_within_job_memory_limit_bytes_succeeds(make_node, tmp_path: Path) -> None:
    node = make_node(HungryPipeline, job_memory_limit_bytes=1024 * 1024 * 1024)
    send(node.port, tmp_path / "ct")
    wait_for(lambda: node.counters.rounds_succeeded == 1, 60, "the round")


def test_output_past_job_output_limit_bytes_keeps_its_head_and_tail(
    make_node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dicomflow.process")
    node = make_node(ChattyPipeline, job_output_limit_bytes=256 * 1024)
    send(node.port, tmp_path / "ct")
    wait_for(lambda: node.counters.rounds_succeeded == 1, 60, "the round")

    lines = [r.getMessage() for r in caplog.records if r.name == "dicomflow.process"]
    text = "\n".join(line.split(" | ", 1)[1] for line in lines)
    assert 256 * 1024 <= len(text) < 256 * 1024 + 4096  # 5 MiB printed
    left_out = re.search(r"\[dicomflow: (\d+) bytes of output left out here", text)
    assert left_out is not None and int(left_out.group(1)) > 4_900_000
    assert "process() returned" in text.rstrip().splitlines()[-1]
