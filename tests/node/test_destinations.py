"""Typed destinations read what earlier versions wrote, and write it back byte for byte."""

import json
from dataclasses import fields
from pathlib import Path

import pydicom
import pytest

from dicomflow.address import Address
from dicomflow.destinations import (
    ArchiveDestination,
    DicomDestination,
    FileDestination,
    OutboxDestination,
    OutputManifest,
)
from dicomflow.dicom.factory import make_ct_series
from dicomflow.engine.counters import Count, NodeCounters
from dicomflow.engine.outbox import DESTINATION, Delivery, Outbox, read_destination
from dicomflow.node.output import ArchiveOutput, DicomOutput, FileOutput, write_outputs
from dicomflow.queue.function import resolve_function

# destination.json files as the outbox wrote them before destinations were typed
ROUND_TO_PEER = {
    "kind": "dicom",
    "ip": "10.0.0.5",
    "port": 104,
    "ae_title": "PACS",
    "calling_ae_title": None,
    "key": "0123456789ab",
    "folder": "000-000",
    "files": ["1.2.3.1.dcm", "1.2.3.2.dcm"],
    "processed_at": 1700000000.5,
}
ROUND_TO_FOLDER = {
    "kind": "file",
    "path": "/srv/results",
    "layout": {"1.2.3.1.dcm": "1.2/1.2.3/1.2.3.1.dcm"},
    "folder": "001-000",
    "files": ["1.2.3.1.dcm"],
    "processed_at": 1700000001.0,
}
SERVICE_TO_PEER = {
    "kind": "dicom",
    "ip": "10.0.0.6",
    "port": 11112,
    "ae_title": "ARCHIVE",
    "processed_at": None,
    "stage_kind": "service",
}
MANIFEST = {
    "outputs": [
        {
            "kind": "dicom",
            "ip": "10.0.0.5",
            "port": 104,
            "ae_title": "PACS",
            "calling_ae_title": "MINE",
            "key": "0123456789ab",
            "folder": "000-000",
            "files": ["1.2.3.1.dcm"],
        },
        {
            "kind": "file",
            "path": "/srv/results",
            "layout": {"1.2.3.1.dcm": "1.2/1.2.3/1.2.3.1.dcm"},
            "folder": "001-000",
            "files": ["1.2.3.1.dcm"],
        },
        {"kind": "archive", "datastore": "s3://bucket/a", "folder": "002-000", "files": []},
    ]
}


@pytest.mark.parametrize("written", [ROUND_TO_PEER, ROUND_TO_FOLDER, SERVICE_TO_PEER])
def test_an_outbox_destination_of_todays_format_reads_back_and_writes_the_same_json(
    written: dict[str, object], tmp_path: Path
) -> None:
    item = tmp_path / "round-000-000"
    item.mkdir()
    text = json.dumps(written, indent=2)
    (item / DESTINATION).write_text(text)

    destination = read_destination(item)

    assert json.dumps(destination.to_json(), indent=2) == text
    assert destination.kind == written["kind"]


def test_an_output_manifest_of_todays_format_reads_back_as_written() -> None:
    manifest = OutputManifest.from_json(json.loads(json.dumps(MANIFEST)))

    peer, folder, archive = (entry.destination for entry in manifest.outputs)
    assert peer == DicomDestination("10.0.0.5", 104, "PACS", "MINE", "0123456789ab")
    assert folder == FileDestination("/srv/results", {"1.2.3.1.dcm": "1.2/1.2.3/1.2.3.1.dcm"})
    assert archive == ArchiveDestination("s3://bucket/a")
    assert json.dumps(manifest.to_json()) == json.dumps(MANIFEST)


def test_the_worker_writes_the_manifest_in_todays_format(tmp_path: Path) -> None:
    series = make_ct_series(2)
    peer = Address("10.0.0.5", 104, "PACS")
    outputs = [
        DicomOutput([(peer, series)], "MINE"),
        FileOutput([(tmp_path / "out", series)]),
        ArchiveOutput("s3://bucket/a", series),
    ]

    written = write_outputs(outputs, tmp_path / "output")

    on_disk = json.loads((tmp_path / "output" / "outputs.json").read_text())
    assert on_disk == written
    dicom, files, archive = on_disk["outputs"]
    assert list(dicom) == [
        *("kind", "ip", "port", "ae_title", "calling_ae_title", "key", "folder", "files")
    ]
    assert dicom["calling_ae_title"] == "MINE" and len(dicom["key"]) == 12
    assert list(files) == ["kind", "path", "layout", "folder", "files"]
    uid = series[0]
    name = f"{uid.SOPInstanceUID}.dcm"
    assert files["layout"][name] == f"{uid.StudyInstanceUID}/{uid.SeriesInstanceUID}/{name}"
    assert list(archive) == ["kind", "datastore", "folder", "files"]
    assert pydicom.dcmread(tmp_path / "output" / dicom["folder"] / name).SOPInstanceUID


def test_the_outbox_delivers_an_item_an_older_version_wrote(tmp_path: Path) -> None:
    sent: list[tuple[Address, str]] = []

    def sender(address: Address, files: list[Path], calling: str) -> Delivery:
        sent.append((address, calling))
        return Delivery(set(files))

    outbox = Outbox(tmp_path / "outbox", calling_ae_title="NODE", sender=sender)
    item = outbox.root / "round-000-000"
    item.mkdir()
    (item / "1.2.3.1.dcm").write_bytes(b"x")
    (item / DESTINATION).write_text(json.dumps(ROUND_TO_PEER, indent=2))

    assert outbox.deliver(item)
    assert sent == [(Address("10.0.0.5", 104, "PACS"), "NODE")]


def test_an_unreadable_destination_is_refused_with_a_value_error(tmp_path: Path) -> None:
    for bad in ({}, {"kind": "dicom", "ip": "x"}, {"kind": "tape"}, [], {"kind": "archive"}):
        with pytest.raises(ValueError):
            OutboxDestination.from_json(bad)


def test_every_count_is_a_counter_of_the_node() -> None:
    counters = NodeCounters()
    for count in Count:
        counters.add(count, 2)
    counted = {f.name: getattr(counters, f.name) for f in fields(counters) if f.name != "lock"}
    assert counted == {count.value: 2 for count in Count}


@pytest.mark.parametrize(
    "queued", ["dicomflow.node.worker:process_round", "dicomflow.node.archive:archive_series"]
)
def test_jobs_queued_under_the_job_functions_old_names_still_run(queued: str) -> None:
    moved = resolve_function(queued)
    assert moved.__module__.startswith("dicomflow.engine.")
    assert moved.__name__ == queued.partition(":")[2]
