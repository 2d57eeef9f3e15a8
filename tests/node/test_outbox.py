"""The outbox: results wait on disk while their peer is down and nothing is lost."""

import json
import logging
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from sample_pipelines import MARK, CopyPipeline

from dicomflow.address import Address
from dicomflow.destinations import DicomDestination, OutboxDestination
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine import outbox as outbox_module
from dicomflow.engine.node import Node
from dicomflow.engine.outbox import DESTINATION, Delivery, Outbox, send_files
from dicomflow.node.pipeline import AbstractPipeline
from support import PeerStarter, StoreSCPPeer, free_port, storescu, wait_for

KEPT = "still unreachable; kept for later"


@pytest.fixture
def outbox_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="dicomflow.engine.outbox")
    return caplog


@pytest.fixture
def open_pipeline(tmp_path: Path) -> Iterator[Callable[..., AbstractPipeline]]:
    """Like ``make_node``, but hands out the pipeline, so a test can close it midway."""
    opened: list[AbstractPipeline] = []

    def factory(pipeline_class: type[AbstractPipeline], **overrides: Any) -> AbstractPipeline:
        pipeline = pipeline_class(
            start=False, port=0, data_directory=tmp_path / "data", **overrides
        )
        pipeline.open(blocking=False, configure_logs=False)
        opened.append(pipeline)
        return pipeline

    yield factory
    for pipeline in opened:
        pipeline.close()


def uids(paths: list[Path]) -> set[str]:
    return {str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths}


def outbox_files(data: Path) -> list[Path]:
    return sorted((data / "outbox").glob("*/*.dcm"))


def send_and_see_it_kept(
    node: Node, tmp_path: Path, outbox_log: pytest.LogCaptureFixture
) -> list[Path]:
    """Send a series to a node whose endpoint is down; check the results wait in the outbox."""
    files = write_series(make_ct_series(4), tmp_path / "series")
    storescu(node.port, files)
    wait_for(lambda: KEPT in outbox_log.text, 30, "a failed delivery")
    assert node.counters.rounds_succeeded == 1
    assert node.counters.delivered == 0
    assert uids(outbox_files(tmp_path / "data")) == uids(files), "every result kept"
    return files


@pytest.mark.parametrize("wake", ["retry_now", "retry_interval"])
def test_results_wait_in_the_outbox_until_the_endpoint_comes_up(
    make_node, storescp_on: PeerStarter, tmp_path: Path, outbox_log, wake: str
):
    port = free_port()
    node = make_node(
        CopyPipeline,
        endpoints=[f"PACS@127.0.0.1:{port}"],
        export_retries=1,
        export_backoff_s=0.01,
        outbox_retry_interval_s=3600.0 if wake == "retry_now" else 0.3,
    )
    files = send_and_see_it_kept(node, tmp_path, outbox_log)
    pacs = storescp_on(port)
    if wake == "retry_now":
        node.outbox.retry_now()
    wait_for(lambda: len(list(pacs.iterdir())) == len(files), 30, "results at the endpoint")
    received = sorted(pacs.iterdir())
    assert uids(received) == uids(files)
    assert {pydicom.dcmread(path).ImageComments for path in received} == {MARK}
    wait_for(lambda: not list((tmp_path / "data" / "outbox").iterdir()), 10, "an empty outbox")
    assert node.counters.delivered == 1


def test_outbox_is_delivered_by_the_next_node_after_a_restart(
    open_pipeline, storescp_on: PeerStarter, tmp_path: Path, outbox_log
):
    port = free_port()
    endpoints = [f"PACS@127.0.0.1:{port}"]
    first = open_pipeline(CopyPipeline, endpoints=endpoints, export_retries=0)
    files = send_and_see_it_kept(first.node, tmp_path, outbox_log)
    first.close()
    assert uids(outbox_files(tmp_path / "data")) == uids(files), "kept across the stop"
    pacs = storescp_on(port)
    second = open_pipeline(CopyPipeline, endpoints=endpoints).node
    wait_for(lambda: len(list(pacs.iterdir())) == len(files), 30, "results after the restart")
    assert uids(sorted(pacs.iterdir())) == uids(files)
    wait_for(lambda: second.counters.delivered == 1, 10, "the delivery to be counted")
    assert not list((tmp_path / "data" / "outbox").iterdir())
    assert second.counters.rounds_started == 0, "the round is not processed again"


# -- the Outbox class with a fake sender ---------------------------------------------------

ENDPOINT = OutboxDestination(DicomDestination("127.0.0.1", 11112, "PACS"))


class FakeSender:
    """Acknowledges the files named in ``plan`` per call (``None``: all; an exception: raise)."""

    def __init__(self, plan: list[object]) -> None:
        self.plan = plan
        self.calls: list[tuple[Address, list[str], str]] = []

    def __call__(self, address: Address, files: list[Path], calling: str) -> Delivery:
        self.calls.append((address, [path.name for path in files], calling))
        step = self.plan[min(len(self.calls), len(self.plan)) - 1]
        if isinstance(step, Exception):
            raise step
        if step == "half":
            return Delivery(set(files[::2]))
        return Delivery(set(files))


def make_item(outbox: Outbox, tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    folder = tmp_path / "result"
    folder.mkdir()
    names = [f"1.2.3.{number}.dcm" for number in range(count)]
    for name in names:
        (folder / name).write_bytes(name.encode())
    return outbox.add("round-000-000", folder, ENDPOINT), names


def make_outbox(tmp_path: Path, sender: FakeSender, retries: int) -> tuple[Outbox, list[Path]]:
    delivered: list[Path] = []
    outbox = Outbox(
        tmp_path / "outbox",
        calling_ae_title="NODE",
        retries=retries,
        backoff_s=0.0,
        sender=sender,
        on_delivered=delivered.append,
    )
    return outbox, delivered


def test_a_retry_resends_only_the_unacknowledged_files(tmp_path: Path):
    sender = FakeSender(["half", "all"])
    outbox, delivered = make_outbox(tmp_path, sender, retries=1)
    item, names = make_item(outbox, tmp_path, 6)
    assert outbox.deliver(item)
    (address, first, calling), (_, second, _) = sender.calls
    assert address == Address("127.0.0.1", 11112, "PACS")
    assert calling == "NODE"
    assert first == names
    assert second == names[1::2]
    assert not item.exists()
    assert delivered == [item]


def test_partial_delivery_keeps_the_rest_for_the_next_attempt(tmp_path: Path):
    sender = FakeSender(["half", "all"])
    outbox, delivered = make_outbox(tmp_path, sender, retries=0)
    item, names = make_item(outbox, tmp_path, 5)
    assert not outbox.deliver(item)
    assert sorted(path.name for path in item.glob("*.dcm")) == names[1::2]
    assert json.loads((item / DESTINATION).read_text())["ae_title"] == "PACS"
    assert delivered == []
    assert outbox.items() == [item]
    assert outbox.deliver(item)
    assert sender.calls[1][1] == names[1::2]
    assert delivered == [item]


def test_an_unreachable_peer_loses_nothing(tmp_path: Path):
    sender = FakeSender([ConnectionRefusedError("peer down")])
    outbox, delivered = make_outbox(tmp_path, sender, retries=2)
    item, names = make_item(outbox, tmp_path, 3)
    assert not outbox.deliver(item)
    assert len(sender.calls) == 3, "one attempt and two retries"
    assert sorted(path.name for path in item.glob("*.dcm")) == names
    assert all((item / name).read_bytes() == name.encode() for name in names)
    assert delivered == []


def test_file_outputs_are_written_durably_and_wait_while_the_folder_cannot_be(
    make_node, tmp_path: Path
):
    from sample_pipelines import FileOutputPipeline

    series = make_ct_series(3)
    blocked = tmp_path / "data" / "files-out"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the folder should be")  # the share is "down"
    node = make_node(FileOutputPipeline, export_retries=0, outbox_retry_interval_s=0.3)
    storescu(node.port, write_series(series, tmp_path / "s"))
    wait_for(lambda: node.outbox.items(), 30, "the results to wait in the outbox")
    [item] = node.outbox.items()
    wait_for(lambda: (item / "last-error.json").exists(), 30, "the failed attempt")
    from dicomflow.web.pages.endpoints import _item

    assert _item(item)["destination"] == f"folder {blocked}"
    blocked.unlink()  # the share is back
    wait_for(lambda: not node.outbox.items(), 30, "the outbox to empty")
    written = sorted(blocked.glob("*/*/*.dcm"))  # study/series/instance.dcm
    assert {p.relative_to(blocked) for p in written} == {
        Path(ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}.dcm") for ds in series
    }
    assert all(pydicom.dcmread(p).ImageComments == MARK for p in written)
    assert not list(blocked.rglob(".*.part"))


# -- the Outbox class with the real sender and dcmtk storescp -------------------------------


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


def dicom_item(outbox: Outbox, tmp_path: Path, name: str, port: int, files: list[Path]) -> Path:
    folder = tmp_path / f"result-{name}"
    folder.mkdir()
    for path in files:
        shutil.copy(path, folder / path.name)
    destination = OutboxDestination(DicomDestination("127.0.0.1", port, "PACS"))
    return outbox.add(name, folder, destination)


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that takes connections and never answers (its listener never accepts)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_a_dead_endpoint_never_delays_a_live_one(
    tmp_path: Path, storescp: StoreSCPPeer, blackhole: int, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(outbox_module, "STOP_WAIT_S", 0.2)  # the silent peer's lane is stuck
    outbox = Outbox(tmp_path / "outbox", calling_ae_title="NODE", retries=5, backoff_s=2.0)
    files = write_series(make_ct_series(3), tmp_path / "series")
    # Items are named so that the dead endpoints' come first.
    dicom_item(outbox, tmp_path, "a-closed-port", free_port(), files)
    dicom_item(outbox, tmp_path, "b-never-answers", blackhole, files)
    live = dicom_item(outbox, tmp_path, "c-live", storescp.port, files)
    started = time.monotonic()
    outbox.start()
    try:
        wait_for(lambda: not live.exists(), 10, "delivery to the live endpoint")
        elapsed = time.monotonic() - started
    finally:
        outbox.stop()
    assert elapsed < 5, f"the live endpoint waited {elapsed:.1f}s"
    assert uids(storescp.files()) == uids(files)
    assert [item.name for item in outbox.items()] == ["a-closed-port", "b-never-answers"]


@pytest.fixture
def uncompressed_storescp(tmp_path: Path) -> Iterator[StoreSCPPeer]:
    """storescp with its default options: uncompressed transfer syntaxes only."""
    peer = StoreSCPPeer(tmp_path / "pacs", options=())
    yield peer
    peer.stop()


def test_a_nodes_results_reach_a_live_endpoint_while_the_others_are_dead(
    make_node, storescp: StoreSCPPeer, blackhole: int, tmp_path: Path
):
    """Endpoints in the order closed port, silent peer, live storescp: the live one has the
    results within seconds of the round's end, not after the others' retries (minutes)."""
    dead = [f"PACS@127.0.0.1:{free_port()}", f"PACS@127.0.0.1:{blackhole}"]
    node = make_node(
        CopyPipeline,
        endpoints=[*dead, storescp.endpoint()],
        export_retries=5,
        export_backoff_s=2.0,
    )
    files = write_series(make_ct_series(3), tmp_path / "series")
    storescu(node.port, files)
    wait_for(lambda: node.counters.rounds_succeeded == 1, 30, "the round")
    ended = time.monotonic()
    wait_for(lambda: len(storescp.files()) == len(files), 15, "results at the live endpoint")
    assert time.monotonic() - ended < 5
    assert uids(storescp.files()) == uids(files)
    assert len(node.outbox.items()) == 2, "the dead endpoints' results wait"


def test_an_instance_no_retry_would_send_is_set_aside_once_with_its_reason(
    tmp_path: Path, uncompressed_storescp: StoreSCPPeer
):
    """The peer takes only uncompressed syntaxes: a JPEG 2000 instance is decoded for it;
    one whose pixel data cannot be decoded is set aside, not retried for ever."""
    storescp = uncompressed_storescp
    broken = pydicom.dcmread(bundled("JPEG2000.dcm"))
    broken.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    broken.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
    broken_path = tmp_path / "broken.dcm"
    broken.save_as(broken_path)
    sender = CountingSender()
    outbox = Outbox(
        tmp_path / "outbox", calling_ae_title="NODE", retries=3, backoff_s=0.0, sender=sender
    )
    item = dicom_item(
        outbox, tmp_path, "round-1", storescp.port, [broken_path, bundled("JPEG2000.dcm")]
    )
    assert outbox.deliver(item), "delivered: nothing left that a retry could send"
    assert sender.calls == 1
    assert not item.exists()
    [arrived] = storescp.files()
    original = pydicom.dcmread(bundled("JPEG2000.dcm"))
    assert (pydicom.dcmread(arrived).pixel_array == original.pixel_array).all()
    aside = tmp_path / "outbox-unsendable" / "round-1"
    assert (aside / "broken.dcm").read_bytes() == broken_path.read_bytes()
    reason = json.loads((aside / "reasons.json").read_text())["broken.dcm"]
    assert "cannot be decoded" in reason and "JPEG 2000" in reason, reason


class CountingSender:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, address: Address, files: list[Path], calling: str) -> Delivery:
        self.calls += 1
        return send_files(address, files, calling)
