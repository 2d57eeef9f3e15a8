"""The SCU (exports, ``dicomflow send``) against dcmtk's storescp and the lean receiver."""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import PeerUnreachableError
from dicomflow.net import requestor
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.requestor import echo, send
from dicomflow.net.storage import AccessPolicy, ReceivedInstance
from support import free_port, wait_for_port

pytestmark = pytest.mark.skipif(shutil.which("storescp") is None, reason="dcmtk is not installed")

TEST_FILES = [  # three MR_small files share a SOP instance UID: one per storescp
    [
        "CT_small.dcm",  # explicit VR little endian
        "MR_small_implicit.dcm",
        "image_dfl.dcm",  # deflated
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
        "rtplan.dcm",  # its file meta names another SOP instance than its dataset
    ],
    ["MR_small_bigendian.dcm"],
    ["MR_small_RLE.dcm"],
]


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(str(path))


class Storescp:
    """dcmtk's storescp with extra options, storing into ``folder``."""

    def __init__(self, folder: Path, *options: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process = subprocess.Popen(
            ["storescp", "-aet", "PACS", "-od", str(folder), *options, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.address = Address("127.0.0.1", self.port, "PACS")

    def received(self) -> dict[str, Dataset]:
        datasets = (dcmread(path) for path in self.folder.iterdir() if path.is_file())
        return {str(ds.SOPInstanceUID): ds for ds in datasets}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[Storescp] = []

    def start(*options: str) -> Storescp:
        peer = Storescp(tmp_path / f"storescp-{len(started)}", *options)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


class Lean:
    """The lean receiver, answering each store with ``status(instance)``."""

    def __init__(self, status: Any = None, **options: Any) -> None:
        self.stored: list[ReceivedInstance] = []
        self._status = status or (lambda instance: 0x0000)
        self.scp = LeanStoreSCP(
            ae_title="LEAN", ip="127.0.0.1", port=0, on_store=self._store, **options
        )
        self.address = Address("127.0.0.1", self.scp.port, "LEAN")

    def _store(self, instance: ReceivedInstance) -> int:
        self.stored.append(instance)
        return int(self._status(instance))


@pytest.fixture
def lean_factory() -> Iterator[Any]:
    started: list[Lean] = []

    def start(status: Any = None, **options: Any) -> Lean:
        peer = Lean(status, **options)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.scp.close()


@pytest.mark.parametrize("names", TEST_FILES, ids=lambda names: names[0])
def test_every_transfer_syntax_arrives_as_it_was_sent(
    storescp_factory: Any, names: list[str]
) -> None:
    peer = storescp_factory("+xa")
    files = [bundled(name) for name in names]
    progress: list[int] = []
    report = send(peer.address, files, on_progress=progress.append)
    assert report.ok, report.failed
    assert report.sent == [str(path) for path in files]
    assert progress == list(range(1, len(files) + 1))
    received = peer.received()
    for path in files:
        original = dcmread(path)
        arrived = received[str(original.SOPInstanceUID)]
        assert arrived.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID, path
        for dataset in (original, arrived):  # storescp drops trailing padding
            dataset.pop(0xFFFCFFFC, None)
        assert arrived == original, path  # every element of the dataset, pixel data included


def test_every_instance_is_reencoded_for_a_peer_taking_only_implicit_vr(
    storescp_factory: Any,
) -> None:
    peer = storescp_factory("+xi")
    names = ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "MR_small_implicit.dcm"]
    files = [bundled(name) for name in names]
    report = send(peer.address, files)
    assert report.ok, report.failed
    received = peer.received()
    for path in files:
        original = dcmread(path)
        arrived = received[str(original.SOPInstanceUID)]
        assert arrived.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        assert (arrived.pixel_array == original.pixel_array).all()
        assert arrived.PatientName == original.PatientName


@pytest.mark.parametrize(
    "name", ["JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_gdcm.dcm"]
)
def test_a_compressed_instance_is_decoded_for_a_peer_taking_only_uncompressed(
    storescp_factory: Any, name: str
) -> None:
    peer = storescp_factory()  # storescp's default: uncompressed syntaxes only
    path = bundled(name)
    dataset = dcmread(path)
    report = send(peer.address, [path, dataset])  # a file, and a dataset
    assert report.ok, report.failed
    original = dcmread(path)
    assert dataset.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert dataset.PixelData == original.PixelData, "the caller's dataset is left as it was"
    assert report.sent == [str(path), str(original.SOPInstanceUID)]
    arrived = peer.received()[str(original.SOPInstanceUID)]
    assert arrived.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert arrived.SOPClassUID == original.SOPClassUID
    assert arrived.PatientName == original.PatientName
    assert (arrived.pixel_array == original.pixel_array).all()


def test_an_instance_that_cannot_be_decoded_fails_alone_and_for_good(
    storescp_factory: Any, tmp_path: Path
) -> None:
    broken = dcmread(bundled("JPEG2000.dcm"))
    broken.PixelData = encapsulate([b"\xff\x4f\xff\x51 not a codestream"])
    broken_path = tmp_path / "broken.dcm"
    broken.save_as(broken_path)
    good = bundled("MR_small_RLE.dcm")
    peer = storescp_factory()
    report = send(peer.address, [broken_path, good])
    assert report.sent == [str(good)]
    reason = report.failed[str(broken_path)]
    assert "only uncompressed" in reason and "JPEG 2000" in reason, reason
    assert report.unsendable == {str(broken_path)}
    assert list(peer.received()) == [str(dcmread(good).SOPInstanceUID)]


def test_large_instances_go_in_pdus_no_longer_than_the_peer_takes(
    storescp_factory: Any, tmp_path: Path
) -> None:
    peer = storescp_factory("+xa", "-pdu", "4096")
    files = write_series(make_ct_series(3, rows=512, columns=512), tmp_path / "large")
    report = send(peer.address, files)
    assert report.ok, report.failed
    received = peer.received()
    for path in files:
        original = dcmread(path)
        assert received[str(original.SOPInstanceUID)].PixelData == original.PixelData


def test_large_files_are_read_while_they_are_sent(
    storescp_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requestor, "STREAM_BYTES", 1000)
    monkeypatch.setattr(requestor, "STREAM_CHUNK", 10_000)  # pieces end inside PDUs of 4,096 bytes
    peer = storescp_factory("+xa", "-pdu", "4096")
    files = [*write_series(make_ct_series(2, rows=128, columns=128), tmp_path / "ct")]
    files.append(bundled("rtplan.dcm"))  # the dataset's SOP UIDs, read from the head
    assert requestor._read(files[0]).path == files[0]
    report = send(peer.address, files)
    assert report.ok, report.failed
    received = peer.received()
    for path in files:
        original = dcmread(path)
        original.pop(0xFFFCFFFC, None)
        assert received[str(original.SOPInstanceUID)] == original


def test_a_file_cut_short_while_it_is_sent_loses_the_association(
    lean_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requestor, "STREAM_BYTES", 1000)
    monkeypatch.setattr(requestor, "STREAM_CHUNK", 1000)
    [path] = write_series(make_ct_series(1, rows=64, columns=64), tmp_path / "ct")
    instance = requestor._read(path)
    path.write_bytes(path.read_bytes()[:3000])
    peer = lean_factory()
    proposal = (instance.sop_class, instance.syntax)
    association = requestor._Association.open(peer.address, "SENDER", [proposal])
    with pytest.raises(OSError, match="got shorter while it was being sent"):
        association.store(1, instance)
    association.abort()
    assert not peer.stored


def test_datasets_are_sent_as_their_transfer_syntax_says(lean_factory: Any) -> None:
    peer = lean_factory()
    datasets = make_ct_series(3, rows=8, columns=8)
    datasets[1].file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    report = send(peer.address, datasets)
    assert report.ok, report.failed
    syntaxes = [instance.transfer_syntax for instance in peer.stored]
    assert syntaxes == [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRLittleEndian]
    for instance, dataset in zip(peer.stored, datasets, strict=True):
        assert instance.dataset.PixelData == dataset.PixelData


def test_a_file_our_parser_refuses_is_read_by_pydicom(lean_factory: Any) -> None:
    path = bundled("no_meta_group_length.dcm")  # no SOP UIDs in its dataset either
    peer = lean_factory()
    report = send(peer.address, [path])
    assert report.ok, report.failed
    meta = dcmread(path).file_meta
    assert peer.stored[0].sop_class_uid == meta.MediaStorageSOPClassUID
    assert peer.stored[0].sop_instance_uid == meta.MediaStorageSOPInstanceUID


def test_a_failure_status_fails_that_instance_only(lean_factory: Any, tmp_path: Path) -> None:
    files = write_series(make_ct_series(4, rows=8, columns=8), tmp_path / "series")
    refused = str(dcmread(files[1]).SOPInstanceUID)
    peer = lean_factory(lambda instance: 0xA700 if instance.sop_instance_uid == refused else 0)
    report = send(peer.address, files)
    assert report.failed == {str(files[1]): "status 0xA700"}
    assert report.sent == [str(files[0]), str(files[2]), str(files[3])]


def test_an_unreadable_file_fails_alone(lean_factory: Any, tmp_path: Path) -> None:
    files = write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "series")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\xff\xff")
    peer = lean_factory()
    report = send(peer.address, [files[0], junk, files[1]])
    assert report.sent == [str(files[0]), str(files[1])]
    assert list(report.failed) == [str(junk)]
    assert report.failed[str(junk)].startswith("cannot send: not a readable DICOM file")
    # Nothing readable at all: no association, every file failed.
    only_junk = send(peer.address, [junk])
    assert list(only_junk.failed) == [str(junk)] and not only_junk.sent


def test_an_aborted_association_fails_that_instance_alone(
    lean_factory: Any, tmp_path: Path
) -> None:
    small = write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "small")
    large = write_series(make_ct_series(1, rows=256, columns=256), tmp_path / "large")
    peer = lean_factory(maximum_instance_bytes=64 * 1024)  # the large one aborts
    files = [small[0], large[0], small[1]]
    report = send(peer.address, files)
    assert report.sent == [str(small[0]), str(small[1])], "the next one on a new association"
    assert list(report.failed) == [str(large[0])]
    assert report.failed[str(large[0])].startswith("association lost")
    assert not report.unsendable, "sent again by the outbox"


def test_after_losses_in_a_row_the_rest_are_not_tried(
    lean_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requestor, "DIMSE_TIMEOUT_S", 0.3)
    files = write_series(make_ct_series(5, rows=8, columns=8), tmp_path / "series")
    peer = lean_factory(lambda instance: time.sleep(0.6) or 0)
    report = send(peer.address, files)
    assert not report.sent
    for path in files[:3]:
        assert report.failed[str(path)] == "association lost: no response within 0.3 s"
    for path in files[3:]:
        assert report.failed[str(path)] == "not tried: 3 instances in a row lost the association"


def test_a_peer_gone_after_a_loss_fails_the_rest_without_waiting(
    lean_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = write_series(make_ct_series(3, rows=8, columns=8), tmp_path / "small")
    large = write_series(make_ct_series(1, rows=256, columns=256), tmp_path / "large")
    peer = lean_factory(maximum_instance_bytes=64 * 1024)
    abort = requestor._Association.abort

    def abort_and_stop_the_peer(association: Any) -> None:  # the peer goes with the loss
        abort(association)
        peer.scp.close()

    monkeypatch.setattr(requestor._Association, "abort", abort_and_stop_the_peer)
    report = send(peer.address, [small[0], large[0], small[1], small[2]])
    assert report.sent == [str(small[0])]
    for path in small[1:]:
        reason = report.failed[str(path)]
        assert reason.startswith("not tried: the association was lost and Cannot associate")


def test_a_rejected_association_says_why(lean_factory: Any, tmp_path: Path) -> None:
    files = write_series(make_ct_series(1, rows=8, columns=8), tmp_path / "series")
    peer = lean_factory(policy=AccessPolicy.build(["SOMEONE"], []))
    with pytest.raises(PeerUnreachableError, match="calling AE title not recognized"):
        send(peer.address, files, calling_ae_title="STRANGER")
    assert not peer.stored


def test_a_peer_that_is_down_is_unreachable(tmp_path: Path) -> None:
    files = write_series(make_ct_series(1, rows=8, columns=8), tmp_path / "series")
    address = Address("127.0.0.1", free_port(), "NOBODY")
    with pytest.raises(PeerUnreachableError, match="Cannot associate with"):
        send(address, files)
    with pytest.raises(PeerUnreachableError, match="Cannot associate with"):
        echo(address)


def test_echo_against_storescp_and_the_lean_receiver(
    storescp_factory: Any, lean_factory: Any
) -> None:
    echo(storescp_factory().address)
    echo(lean_factory().address)


def test_a_peer_that_refuses_the_sop_class_fails_each_instance(
    lean_factory: Any, tmp_path: Path
) -> None:
    files = write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "series")
    peer = lean_factory()
    peer.scp.negotiate = lambda abstract, proposed: (3, proposed[0])  # type: ignore[method-assign]
    report = send(peer.address, files)
    assert not report.sent
    assert not report.unsendable, "the peer may come to accept it: retried"
    name = CTImageStorage.name
    assert (
        report.failed[str(files[0])]
        == f"cannot send: the peer accepts nothing for {name}, not {ExplicitVRLittleEndian.name}"
    )


def test_jpeg2000_lossless_is_proposed_as_is(storescp_factory: Any) -> None:
    """A syntax of the sources is proposed even when no default covers it."""
    contexts = requestor._contexts_for([bundled("MR_small_jp2klossless.dcm")])
    assert (
        str(dcmread(bundled("MR_small_jp2klossless.dcm")).SOPClassUID),
        JPEG2000Lossless,
    ) in contexts
