"""The node's two receivers (the lean SCP and pynetdicom's server with the event-driven
reactors), and our pynetdicom SCU, with dcmtk and pynetdicom peers on both sides."""

import logging
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynetdicom
import pytest
from pydicom import dcmread
from pydicom.uid import UID, CTImageStorage
from pynetdicom import AE, evt
from pynetdicom.dul import DULServiceProvider

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import PeerUnreachableError
from dicomflow.net import reactor
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.address import Address
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
def instances(tmp_path: Path) -> list[Path]:
    return write_series(make_ct_series(40, rows=16, columns=16), tmp_path / "series")


def uids_of(paths: list[Path]) -> list[str]:
    return [str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]


def dcmtk(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(arguments, capture_output=True, text=True, timeout=60)


def test_install_is_idempotent() -> None:
    assert reactor.install()
    run_reactor = DULServiceProvider.run_reactor
    assert reactor.install()
    assert DULServiceProvider.run_reactor is run_reactor


@pytest.mark.parametrize(
    ("version", "expected"), [("3.0.4", True), ("3.0", True), ("3.1.0", False), ("30.0", False)]
)
def test_only_pynetdicom_3_0_is_supported(version: str, expected: bool) -> None:
    assert reactor.supported(version) is expected


def test_other_pynetdicom_versions_keep_the_stock_reactors(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(reactor, "installed", lambda: False)
    monkeypatch.setattr(pynetdicom, "__version__", "3.1.0")
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.reactor"):
        assert not reactor.install()
    assert "3.1.0" in caplog.text


def test_echoscu_gets_success(receiver: Receiver) -> None:
    result = dcmtk("echoscu", "-aec", "DICOMFLOW", "127.0.0.1", str(receiver.scp.port))
    assert result.returncode == 0, result.stderr


def test_storescu_stores_every_instance_without_delayed_acks(
    receiver: Receiver, instances: list[Path]
) -> None:
    started = time.monotonic()
    result = dcmtk(
        "storescu", "-aec", "DICOMFLOW", "127.0.0.1", str(receiver.scp.port), *map(str, instances)
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert receiver.uids == uids_of(instances)
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


def test_idle_association_burns_no_cpu(receiver: Receiver) -> None:
    assoc = requestor().associate("127.0.0.1", receiver.scp.port, ae_title="DICOMFLOW")
    assert assoc.is_established
    time.sleep(0.2)
    cpu_before = time.process_time()
    time.sleep(1.0)
    idle_cpu = time.process_time() - cpu_before
    status = assoc.send_c_echo()
    assoc.release()
    # Stock pynetdicom polls every 1 ms in four threads here: ~0.1 s of CPU per second.
    assert idle_cpu < 0.03
    assert status.Status == 0x0000
    assert assoc.is_released


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


@pytest.fixture
def short_timeout_server() -> Iterator[Any]:
    """A plain pynetdicom Verification SCP whose network and ACSE timeouts are 0.3 s."""
    reactor.install()
    ae = AE(ae_title="SHORT")
    ae.add_supported_context(VERIFICATION)
    ae.network_timeout = 0.3
    ae.acse_timeout = 0.3
    server = ae.start_server(("127.0.0.1", 0), block=False)
    assert server is not None
    yield server
    server.shutdown()


def test_network_timeout_aborts_an_idle_association(short_timeout_server: Any) -> None:
    aborted = threading.Event()
    handlers: list[Any] = [(evt.EVT_ABORTED, lambda event: aborted.set())]
    port = short_timeout_server.server_address[1]
    assoc = requestor().associate("127.0.0.1", port, evt_handlers=handlers)
    assert assoc.is_established
    assert aborted.wait(3.0)
    assert assoc.is_aborted


def test_artim_timer_closes_a_silent_connection(short_timeout_server: Any) -> None:
    port = short_timeout_server.server_address[1]
    with socket.create_connection(("127.0.0.1", port)) as silent:
        silent.settimeout(3.0)
        assert silent.recv(1) == b""


def requestor() -> AE:
    ae = AE(ae_title="REQUESTOR")
    ae.add_requested_context(VERIFICATION)
    ae.add_requested_context(CTImageStorage)
    return ae


wait_for_listener = wait_for_port
