"""User identity negotiation (PS3.7 D.3.3.7) over loopback: dcmtk's storescu and echoscu
against both receivers, hostile identities on a raw socket, and the node's sender
presenting an identity to a pynetdicom peer that checks it."""

import json
import logging
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from dicomflow import metrics
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.errors import PeerUnreachableError
from dicomflow.net import acceptor, pdu, requestor
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.pynetdicom_acceptor import StoreSCP
from dicomflow.net.user_identity import (
    Identities,
    IdentityPolicy,
    KnownUser,
    PasswordHash,
    UserIdentity,
    format_identities,
)
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor, Address
from support import free_port, wait_for

RECEIVERS = ["lean", "pynetdicom"]
REJECTED = "Rejected Permanent, Source: Service User"


class HeldInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        return False


class KeepingPipeline(AbstractPipeline):
    """Keeps every instance it receives in the spool (its input never validates)."""

    input = {"any": HeldInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return None


@pytest.fixture
def series(tmp_path: Path) -> list[Path]:
    return write_series(make_ct_series(1, rows=16, columns=16), tmp_path / "series")


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    users = [
        KnownUser("alice", PasswordHash.make("s3cret", n=1024)),
        KnownUser("ct-only", PasswordHash.make("pw", n=1024), frozenset({"CT1"})),
        KnownUser("robot", None),
    ]
    path.write_text(format_identities(users))
    path.chmod(0o600)
    return path


def storescu(port: int, files: list[Path], *options: str, aet: str = "STORESCU") -> Any:
    command = ["storescu", "-aet", aet, "-aec", "DICOMFLOW", *options, "127.0.0.1", str(port)]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=60)


def echoscu(port: int) -> Any:
    command = ["echoscu", "-aet", "ECHOSCU", "-aec", "DICOMFLOW", "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def identity_rejections() -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "dicomflow_rejections_total", {"reason": metrics.REASON_IDENTITY}
    )
    return sample or 0.0


def refused_by_identity(result: Any) -> bool:
    output = result.stdout + result.stderr
    return result.returncode != 0 and REJECTED in output and "Reason: No Reason" in output


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_without_a_file_an_identity_is_accepted_with_a_positive_response(
    make_node, series: list[Path], receiver: str
):
    node = make_node(KeepingPipeline, receiver=receiver)
    result = storescu(node.port, series, "-usr", "anyone", "-pwd", "anything", "-rsp")
    assert result.returncode == 0, result.stderr  # storescu fails without the 0x59 it asked for
    assert node.counters.received == len(series)


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_identities_are_checked_against_the_file(
    make_node,
    series: list[Path],
    users_file: Path,
    receiver: str,
    caplog: pytest.LogCaptureFixture,
):
    node = make_node(KeepingPipeline, receiver=receiver, user_identities_file=users_file)
    before = identity_rejections()

    good = storescu(node.port, series, "-usr", "alice", "-pwd", "s3cret", "-rsp")
    assert good.returncode == 0, good.stderr
    assert node.counters.received == 1

    with caplog.at_level(logging.WARNING, logger="dicomflow.net"):
        wrong = storescu(node.port, series, "-usr", "alice", "-pwd", "s3creT", "-rsp")
        unknown = storescu(node.port, series, "-usr", "mallory", "-pwd", "s3cret")
        other_ae = storescu(node.port, series, "-usr", "ct-only", "-pwd", "pw", aet="MR1")
    assert refused_by_identity(wrong), wrong.stderr
    assert refused_by_identity(unknown), unknown.stderr
    assert refused_by_identity(other_ae), other_ae.stderr
    lines = [r.getMessage() for r in caplog.records if "rejected association" in r.getMessage()]
    assert any("'alice': wrong password" in line and "127.0.0.1" in line for line in lines)
    assert any("'STORESCU'" in line and "'mallory': unknown user" in line for line in lines)
    assert any("'MR1'" in line and "'ct-only'" in line for line in lines), lines
    assert identity_rejections() == before + 3
    wait_for(lambda: node.counters.refused == 3, timeout_s=5, what="three refusals counted")
    audit = [json.loads(line) for line in node.settings.audit_log_file().read_text().splitlines()]
    rejected = {(r["identity"], r["result"]) for r in audit if r["result"].startswith("rejected")}
    assert rejected == {
        ("alice", "rejected: user identity: wrong password"),
        ("mallory", "rejected: user identity: unknown user"),
        ("ct-only", "rejected: user identity: calling AE title not allowed for this user"),
    }

    assert storescu(node.port, series, "-usr", "ct-only", "-pwd", "pw", aet="CT1").returncode == 0
    username_only = storescu(node.port, series, "-usr", "robot", "-rsp")
    assert username_only.returncode == 0, username_only.stderr
    assert refused_by_identity(storescu(node.port, series, "-usr", "alice"))  # no password
    assert echoscu(node.port).returncode == 0, "no identity is fine unless required"
    assert node.counters.received == 3


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_required_identity_must_be_presented(
    make_node, series: list[Path], users_file: Path, receiver: str
):
    node = make_node(
        KeepingPipeline,
        receiver=receiver,
        user_identities_file=users_file,
        require_user_identity=True,
    )
    assert refused_by_identity(echoscu(node.port))
    assert refused_by_identity(storescu(node.port, series))
    assert storescu(node.port, series, "-usr", "alice", "-pwd", "s3cret").returncode == 0
    assert node.counters.received == 1


def test_required_without_a_file_takes_any_identity(make_node, series: list[Path]):
    node = make_node(KeepingPipeline, require_user_identity=True)
    assert refused_by_identity(storescu(node.port, series))
    assert storescu(node.port, series, "-usr", "anyone", "-rsp").returncode == 0


# -- the name each association carries ----------------------------------------------------


def test_the_lean_association_records_the_username(
    monkeypatch: pytest.MonkeyPatch, series: list[Path], users_file: Path
):
    seen: list[str] = []
    serve = acceptor._Association._serve

    def recording(self: acceptor._Association) -> None:
        seen.append(self.identity)
        serve(self)

    monkeypatch.setattr(acceptor._Association, "_serve", recording)
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW",
        ip="127.0.0.1",
        port=0,
        on_store=lambda instance: 0,
        identity_policy=IdentityPolicy(Identities.load(users_file)),
    )
    try:
        assert storescu(scp.port, series, "-usr", "alice", "-pwd", "s3cret").returncode == 0
        assert storescu(scp.port, series).returncode == 0
    finally:
        scp.close()
    assert seen == ["alice", ""]


def test_the_pynetdicom_receiver_records_the_username(series: list[Path]):
    names: list[str] = []
    scp: StoreSCP | None = None

    def on_store(instance: Any) -> int:
        assert scp is not None
        names.append(scp.identity_of(instance.association_id))
        return 0

    scp = StoreSCP(ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=on_store)
    try:
        assert storescu(scp.port, series, "-usr", "bob", "-pwd", "x", "-rsp").returncode == 0
    finally:
        scp.close()
    assert names == ["bob"]


# -- hostile identities ----------------------------------------------------------------------


def raw_request(username: bytes, passcode: bytes = b"pw") -> bytes:
    """An A-ASSOCIATE-RQ PDU presenting ``username`` as it is, bytes and all."""
    sub_item = struct.pack(">BBH", 2, 1, len(username)) + username
    sub_item += struct.pack(">H", len(passcode)) + passcode
    body = pdu.associate_rq(
        "DICOMFLOW", "HOSTILE", [(pdu.VERIFICATION, "1.2.840.10008.1.2")], 16384
    )
    user_at = body.rindex(b"\x50\x00")
    (length,) = struct.unpack_from(">H", body, user_at + 2)
    user = body[user_at + 4 : user_at + 4 + length] + pdu.item(0x58, sub_item)
    return pdu.pdu(pdu.ASSOCIATE_RQ, body[:user_at] + pdu.item(0x50, user))


def answer_to(port: int, request: bytes) -> int:
    """The type of the PDU the node answers ``request`` with."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(4096):  # all of it, until the node closes
            answer += chunk
    return answer[0] if answer else 0


HOSTILE = [b"", b"../x", b"a\x00b\x00", b"\xff\xfe\xfd", b"\x1b[31mred\n", b"n" * 10_000]


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_hostile_usernames_are_rejected_with_a_short_log_line(
    make_node, users_file: Path, receiver: str, caplog: pytest.LogCaptureFixture
):
    node = make_node(KeepingPipeline, receiver=receiver, user_identities_file=users_file)
    caplog.clear()  # what the node logged about itself at start is not in question
    with caplog.at_level(logging.WARNING):
        for username in HOSTILE:
            assert answer_to(node.port, raw_request(username)) in (
                pdu.ASSOCIATE_RJ,
                pdu.ABORT,
            ), username
        wait_for(lambda: node.counters.refused >= 5, timeout_s=10, what="refusals counted")
    # (pynetdicom's own debug handler logs a traceback for a username not in UTF-8)
    ours = [
        record
        for record in caplog.records
        if record.name.startswith("dicomflow") and record.levelno >= logging.WARNING
    ]
    messages = [record.getMessage() for record in ours]
    assert not any(record.exc_info for record in ours)
    assert all(len(message) < 400 for message in messages), max(messages, key=len)
    assert all("\n" not in message and "\x00" not in message for message in messages)
    assert any("'../x': unknown user" in message for message in messages)
    assert any("10000 characters" in message for message in messages)
    assert echoscu(node.port).returncode == 0, "the node still answers"


def test_a_malformed_identity_aborts_the_lean_association(make_node):
    node = make_node(KeepingPipeline)
    request = bytearray(raw_request(b"alice"))
    at = request.rindex(b"\x02\x01\x00\x05alice")
    request[at + 2 : at + 4] = struct.pack(">H", 0x0400)  # primary field past its sub-item
    assert answer_to(node.port, bytes(request)) == pdu.ABORT
    assert echoscu(node.port).returncode == 0


# -- the sender ------------------------------------------------------------------------------


class CheckingPeer:
    """A pynetdicom SCP that accepts user ``alice`` with password ``s3cret`` only."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes, bytes]] = []
        self.stored = 0
        self.ae = AE(ae_title="PEER")
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.port = free_port()
        handlers = [(evt.EVT_USER_ID, self.check), (evt.EVT_C_STORE, self.store)]
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=handlers
        )

    def check(self, event: Any) -> tuple[bool, bytes | None]:
        self.seen.append((event.user_id_type, event.primary_field, event.secondary_field))
        return (event.primary_field, event.secondary_field) == (b"alice", b"s3cret"), None

    def store(self, event: Any) -> int:
        self.stored += 1
        return 0

    def address(self) -> Address:
        return Address("127.0.0.1", self.port, "PEER")

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def checking_peer() -> Iterator[CheckingPeer]:
    peer = CheckingPeer()
    yield peer
    peer.stop()


def test_the_sender_presents_an_identity_the_peer_checks(
    checking_peer: CheckingPeer, series: list[Path], caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.requestor"):
        report = requestor.send(
            checking_peer.address(), series, identity=UserIdentity.of("alice", "s3cret")
        )
    assert report.ok and checking_peer.stored == len(series)
    assert checking_peer.seen == [(2, b"alice", b"s3cret")]
    # pynetdicom answers username identities without the positive response asked for
    assert "without confirming user 'alice'" in caplog.text

    with pytest.raises(PeerUnreachableError, match="rejected"):
        requestor.send(checking_peer.address(), series, identity=UserIdentity.of("alice", "x"))
    with pytest.raises(PeerUnreachableError, match="rejected"):
        requestor.echo(checking_peer.address(), identity=UserIdentity.of("mallory", "s3cret"))
    assert (
        requestor.echo(checking_peer.address(), identity=UserIdentity.of("alice", "s3cret")) is None
    )
    assert checking_peer.stored == len(series)


def test_the_sender_gets_the_nodes_positive_response(
    make_node, series: list[Path], users_file: Path, caplog: pytest.LogCaptureFixture
):
    node: Node = make_node(KeepingPipeline, user_identities_file=users_file)
    address = Address("127.0.0.1", node.port, "DICOMFLOW")
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.requestor"):
        report = requestor.send(address, series, identity=UserIdentity.of("alice", "s3cret"))
        requestor.echo(address, identity=UserIdentity.of("robot"))
    assert report.ok and node.counters.received == len(series)
    assert "without confirming" not in caplog.text
    with pytest.raises(PeerUnreachableError, match="rejected the association permanently"):
        requestor.echo(address, identity=UserIdentity.of("alice", "wrong"))


def test_scrypt_checks_run_side_by_side(make_node, users_file: Path):
    """Associations checking passwords at once neither block nor fail one another."""
    node = make_node(KeepingPipeline, user_identities_file=users_file)
    address = Address("127.0.0.1", node.port, "DICOMFLOW")
    errors: list[Exception] = []

    def one() -> None:
        try:
            requestor.echo(address, identity=UserIdentity.of("alice", "s3cret"))
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
