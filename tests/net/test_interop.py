"""The node's two receivers (the lean acceptor and pynetdicom's stock server), and the
requestor, with dcmtk and pynetdicom peers on both sides."""

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import UID, CTImageStorage, ImplicitVRLittleEndian
from pynetdicom import AE

from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import PeerUnreachableError
from dicomflow.net import requestor as requestor_module
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.requestor import echo, send
from dicomflow.net.storage import ReceivedInstance
from support import wait_for_port

VERIFICATION = UID("1.2.840.10008.1.1")

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")


class Receiver:
    """A running SCP that remembers what it received and which associations ended."""

    def __init__(self, server: type[StoreSCP] | type[LeanStoreSCP] = StoreSCP) -> None:
        self.uids: list[str] = []
        self.ended = threading.Event()
        self.scp = server(
            ae_title="DICOMFLOW",
            ip="127.0.0.1",
            port=0,
            on_store=self._store,
            on_release=lambda _: self.ended.set(),
        )
        self.address = Address("127.0.0.1", self.scp.port, "DICOMFLOW")

    def _store(self, instance: ReceivedInstance) -> int:
        self.uids.append(str(instance.dataset.SOPInstanceUID))
        return 0x0000


@pytest.fixture(params=[StoreSCP, LeanStoreSCP], ids=["pynetdicom", "lean"])
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    running = Receiver(request.param)
    yield running
    running.scp.close()


@pytest.fixture
def lean_receiver() -> Iterator[Receiver]:
    running = Receiver(LeanStoreSCP)
    yield running
    running.scp.close()


@pytest.fixture
def instances(tmp_path: Path) -> list[Path]:
    return write_series(make_ct_series(40, rows=16, columns=16), tmp_path / "series")


def uids_of(paths: list[Path]) -> list[str]:
    return [str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]


def dcmtk(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(arguments, capture_output=True, text=True, timeout=60)


def test_echoscu_gets_success(receiver: Receiver) -> None:
    result = dcmtk("echoscu", "-aec", "DICOMFLOW", "127.0.0.1", str(receiver.scp.port))
    assert result.returncode == 0, result.stderr


def test_storescu_stores_every_instance(receiver: Receiver, instances: list[Path]) -> None:
    result = dcmtk(
        "storescu", "-aec", "DICOMFLOW", "127.0.0.1", str(receiver.scp.port), *map(str, instances)
    )
    assert result.returncode == 0, result.stderr
    assert receiver.uids == uids_of(instances)


def test_the_lean_acceptor_takes_storescu_without_delayed_acks(
    lean_receiver: Receiver, instances: list[Path]
) -> None:
    started = time.monotonic()
    port = str(lean_receiver.scp.port)
    result = dcmtk("storescu", "-aec", "DICOMFLOW", "127.0.0.1", port, *map(str, instances))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert lean_receiver.uids == uids_of(instances)
    # Stock pynetdicom needs >= 40 ms per instance here (delayed ACKs, 1 ms polls).
    assert elapsed < 1.0


def test_storescu_abort_ends_the_association(receiver: Receiver, instances: list[Path]) -> None:
    port = str(receiver.scp.port)
    result = dcmtk("storescu", "--abort", "-aec", "DICOMFLOW", "127.0.0.1", port, str(instances[0]))
    assert result.returncode == 0, result.stderr
    assert receiver.ended.wait(2.0)
    assert receiver.uids == uids_of(instances[:1])


def test_parallel_storescu_associations_all_succeed(
    receiver: Receiver, instances: list[Path]
) -> None:
    port = str(receiver.scp.port)
    command = ["storescu", "-aec", "DICOMFLOW", "127.0.0.1", port]
    senders = [
        subprocess.Popen([*command, *map(str, instances[part::4])], stderr=subprocess.PIPE)
        for part in range(4)
    ]
    assert [sender.wait(60) for sender in senders] == [0, 0, 0, 0]
    assert sorted(receiver.uids) == sorted(uids_of(instances))


def test_dicomflow_scu_echoes_and_stores(receiver: Receiver, instances: list[Path]) -> None:
    echo(receiver.address)
    report = send(receiver.address, instances)
    assert report.ok, report.failed
    assert receiver.uids == uids_of(instances)
    assert receiver.ended.wait(2.0)


def test_dicomflow_scu_stores_into_storescp(tmp_path: Path, instances: list[Path]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "storescp"
    output.mkdir()
    peer = subprocess.Popen(["storescp", "-aet", "PACS", "-od", str(output), str(port)])
    try:
        wait_for_listener(port)
        report = send(Address("127.0.0.1", port, "PACS"), instances)
    finally:
        peer.terminate()
        peer.wait(10)
    assert report.ok, report.failed
    assert len(list(output.iterdir())) == len(instances)


def test_pynetdicom_scu_abort_ends_the_association(receiver: Receiver) -> None:
    assoc = requestor().associate("127.0.0.1", receiver.scp.port, ae_title="DICOMFLOW")
    assert assoc.is_established
    assoc.abort()
    assert receiver.ended.wait(2.0)
    assoc.join(2.0)
    assert not assoc.is_alive()


def test_an_idle_association_burns_no_cpu_at_either_end(lean_receiver: Receiver) -> None:
    proposal = (str(VERIFICATION), str(ImplicitVRLittleEndian))
    association = requestor_module._Association.open(lean_receiver.address, "IDLE", [proposal])
    time.sleep(0.2)
    cpu_before = time.process_time()
    time.sleep(1.0)
    idle_cpu = time.process_time() - cpu_before
    status = association.echo()
    association.release()
    # Stock pynetdicom polls every 1 ms in each of its two threads per association end.
    assert idle_cpu < 0.03
    assert status == 0x0000
    assert lean_receiver.ended.wait(2.0)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_associations_leave_no_descriptors_or_threads_behind(receiver: Receiver) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    echo(receiver.address)
    time.sleep(0.5)
    descriptors, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
    for _ in range(10):
        echo(receiver.address)
        with pytest.raises(PeerUnreachableError):
            echo(Address("127.0.0.1", closed_port, "NOBODY"))
    time.sleep(0.5)
    assert len(os.listdir("/proc/self/fd")) <= descriptors
    assert threading.active_count() <= threads


def requestor() -> AE:
    ae = AE(ae_title="REQUESTOR")
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CTImageStorage)
    return ae


wait_for_listener = wait_for_port
