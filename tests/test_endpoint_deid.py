"""The ``?deid`` flag of endpoints (alone or with ``?tls``), the ``deidentify`` flag of
addresses, of destinations on disk and of the built-in outputs."""

import json
from pathlib import Path

import pytest
from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.destinations import (
    DicomDestination,
    FileDestination,
    OutboxDestination,
    destination_from_json,
)
from dicomflow.engine.node import Node
from dicomflow.engine.pipeline_ref import PipelineRef
from dicomflow.engine.round_job import WorkerTask
from dicomflow.errors import DeidConfigError, ProcessingError
from dicomflow.node.output import DicomOutput, FileOutput, normalise
from dicomflow.settings import NodeSettings, format_endpoint, parse_endpoint


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("RESEARCH@10.0.0.5:104?deid", Address("10.0.0.5", 104, "RESEARCH", deidentify=True)),
        ("R@h:2762?tls&deid", Address("h", 2762, "R", tls=True, deidentify=True)),
        ("R@h:104?tls", Address("h", 104, "R", tls=True)),
    ],
)
def test_endpoint_flags_round_trip(text: str, address: Address):
    assert parse_endpoint(text) == address
    assert format_endpoint(address) == text


def test_the_flags_may_come_in_either_order():
    assert parse_endpoint("R@h:104?deid&tls") == parse_endpoint("R@h:104?tls&deid")


@pytest.mark.parametrize(
    "text", ["R@h:104?deid&", "R@h:104?deid&deid", "R@h:104?DEID", "R@h:104?deid=1", "R@h:104?&"]
)
def test_a_wrong_flag_is_a_one_line_error_naming_the_endpoint(text: str):
    with pytest.raises(ValueError) as caught:
        parse_endpoint(text)
    assert str(caught.value).startswith('endpoint "R@h:104?') and "\n" not in str(caught.value)


def test_a_move_destination_cannot_be_deid_and_deid_endpoints_are_no_move_destinations():
    with pytest.raises(ValueError, match='move destination "V@h:104\\?deid"'):
        NodeSettings(move_destinations=["V@h:104?deid"])
    settings = NodeSettings(endpoints=["PACS@h:104", "RESEARCH@h:105?deid"])
    assert [a.ae_title for a in settings.move_destination_addresses()] == ["PACS"]
    assert [a.deidentify for a in settings.endpoint_addresses()] == [False, True]


def test_an_address_deidentify_flag_is_checked():
    with pytest.raises(ValueError, match='Address deidentify "yes"'):
        Address("h", 104, "A", deidentify="yes").validate()  # type: ignore[arg-type]


def test_destinations_keep_the_flag_on_disk_and_older_files_are_plain():
    peer = DicomDestination("h", 104, "R", tls=True, deidentify=True)
    folder = FileDestination("/srv/out", deidentify=True)
    for destination in (peer, folder):
        data = json.loads(json.dumps(OutboxDestination(destination).to_json()))
        assert data["deidentify"] is True
        assert OutboxDestination.from_json(data).destination == destination
    assert peer.describe() == "R@h:104?tls&deid"
    assert destination_from_json({"ip": "h", "port": 104, "ae_title": "R"}).deidentify is False
    with pytest.raises(ValueError, match="deidentify must be true or false"):
        destination_from_json({"ip": "h", "port": 104, "ae_title": "R", "deidentify": "yes"})


def test_a_job_carries_the_flag_of_its_endpoints():
    endpoints = (Address("h", 104, "A"), Address("h", 105, "B", tls=True, deidentify=True))
    task = WorkerTask(PipelineRef("m", "P", None), "r", "p", {}, "/d", endpoints)
    kwargs = json.loads(json.dumps(task.to_kwargs()))
    assert WorkerTask.from_kwargs(kwargs).endpoints == endpoints
    kwargs["endpoints"] = [["h", 104, "A", True]]  # as an older version wrote it
    assert WorkerTask.from_kwargs(kwargs).endpoints == (Address("h", 104, "A", tls=True),)


def test_the_outputs_name_deidentified_destinations(tmp_path: Path):
    dataset = Dataset()
    endpoint = Address("h", 104, "R", deidentify=True)
    [output] = normalise([dataset], [Address("h", 104, "P"), endpoint], "ME")
    assert [d.deidentify for d, _ in output.destinations()] == [False, True]
    [(marked, _)] = DicomOutput(
        [(Address("h", 104, "P"), [dataset])], deidentify=True
    ).destinations()
    assert isinstance(marked, DicomDestination) and marked.deidentify
    [(folder, _)] = FileOutput([(tmp_path, [dataset])], deidentify=True).destinations()
    assert isinstance(folder, FileDestination) and folder.deidentify


def test_deidentified_outputs_are_not_sent_by_themselves(tmp_path: Path):
    with pytest.raises(ProcessingError, match="its send\\(\\) would send the originals"):
        DicomOutput([(Address("h", 104, "P", deidentify=True), [])]).send()
    with pytest.raises(ProcessingError):
        FileOutput([(tmp_path, [Dataset()])], deidentify=True).send()
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="default saving function only"):
        FileOutput([(tmp_path, [])], lambda path, dataset: None, deidentify=True)


def test_a_node_with_a_deid_endpoint_checks_the_pixel_cleaning_rules_at_start(tmp_path: Path):
    settings = NodeSettings(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=["RESEARCH@127.0.0.1:104?deid"],
        deid_pixel_cleaning=[str(tmp_path / "missing.deid")],
    )
    node = Node(None, settings)
    with pytest.raises(DeidConfigError, match=r"deid_pixel_cleaning: .*missing\.deid"):
        node.start()
