"""A node exports to an endpoint ``...?tls`` over DICOM TLS with its own TLS files:
dcmtk's ``storescp +tls`` with and without mutual TLS, an untrusted server (results kept,
a log line naming the peer), a restart with a TLS export pending, and the sends of a
pipeline's own output in the worker process."""

import json
import logging
from pathlib import Path
from typing import Any

import pydicom
import pytest
from sample_pipelines import MARK, CopyPipeline
from tls_pipelines import WorkerSendsPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.tls import SelfSigned, make_self_signed
from support import StoreSCPPeer, free_port, storescu, wait_for
from support import sop_uids as uids

KEPT = "still unreachable; kept for later"


@pytest.fixture
def outbox_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="dicomflow.engine.outbox")
    return caplog


@pytest.fixture
def node_pair(tmp_path: Path) -> SelfSigned:
    return make_self_signed(tmp_path / "node-tls", common_name="node")


def outbox_files(data: Path) -> list[Path]:
    return sorted((data / "outbox").glob("*/*.dcm"))


def send_series(node: Node, tmp_path: Path, count: int = 4) -> list[Path]:
    files = write_series(make_ct_series(count), tmp_path / "series")
    storescu(node.port, files)
    return files


def delivered(peer: StoreSCPPeer, files: list[Path]) -> None:
    wait_for(lambda: len(peer.files()) == len(files), 30, "results at the TLS endpoint")
    received = peer.files()
    assert uids(received) == uids(files)
    assert {pydicom.dcmread(path).ImageComments for path in received} == {MARK}


def test_results_reach_a_tls_endpoint(
    make_node, tmp_path: Path, server_pair: SelfSigned, outbox_log
):
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair)
    try:
        node = make_node(
            CopyPipeline,
            endpoints=[peer.endpoint()],
            tls_ca_certificates=server_pair.certificate,
        )
        files = send_series(node, tmp_path)
        delivered(peer, files)
        wait_for(lambda: node.counters.delivered == 1, 10, "the delivery to be counted")
        assert "?tls" in outbox_log.text, "the log names the endpoint as a TLS one"
    finally:
        peer.stop()


def test_results_reach_a_mutual_tls_endpoint_with_the_nodes_certificate(
    make_node, tmp_path: Path, server_pair: SelfSigned, node_pair: SelfSigned
):
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair, client_ca=node_pair.certificate)
    try:
        node = make_node(
            CopyPipeline,
            endpoints=[peer.endpoint()],
            tls_certificate=node_pair.certificate,
            tls_private_key=node_pair.private_key,
            tls_ca_certificates=server_pair.certificate,
            tls_port=free_port(),  # `port` stays plain for storescu
        )
        files = send_series(node, tmp_path)
        delivered(peer, files)
    finally:
        peer.stop()


def test_a_mutual_tls_endpoint_refuses_a_node_without_a_certificate(
    make_node, tmp_path: Path, server_pair: SelfSigned, node_pair: SelfSigned, outbox_log
):
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair, client_ca=node_pair.certificate)
    try:
        node = make_node(
            CopyPipeline,
            endpoints=[peer.endpoint()],
            tls_ca_certificates=server_pair.certificate,
            export_retries=0,
        )
        files = send_series(node, tmp_path)
        wait_for(lambda: KEPT in outbox_log.text, 30, "a failed delivery")
        assert uids(outbox_files(tmp_path / "data")) == uids(files), "every result kept"
        assert peer.files() == []
    finally:
        peer.stop()


def test_an_untrusted_server_certificate_keeps_the_results(
    make_node, tmp_path: Path, server_pair: SelfSigned, node_pair: SelfSigned, outbox_log
):
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair)
    try:
        node = make_node(
            CopyPipeline,
            endpoints=[peer.endpoint()],
            tls_ca_certificates=node_pair.certificate,  # trusts another certificate only
            export_retries=1,
        )
        files = send_series(node, tmp_path)
        wait_for(lambda: KEPT in outbox_log.text, 30, "a failed delivery")
        failures = [
            r.getMessage() for r in outbox_log.records if "TLS handshake failed" in r.getMessage()
        ]
        assert failures, outbox_log.text
        assert f"PACS@127.0.0.1:{peer.port}" in failures[0]
        assert "not trusted" in failures[0] and "\n" not in failures[0]
        assert uids(outbox_files(tmp_path / "data")) == uids(files), "never lost"
        assert peer.files() == [] and node.counters.delivered == 0
    finally:
        peer.stop()


def test_a_pending_tls_export_is_sent_over_tls_after_a_restart(
    tmp_path: Path, server_pair: SelfSigned, outbox_log
):
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair)
    peer.stop()  # down while the first node runs; the same port later
    settings: dict[str, Any] = {
        "port": 0,
        "data_directory": tmp_path / "data",
        "endpoints": [peer.endpoint()],
        "tls_ca_certificates": server_pair.certificate,
    }
    first = CopyPipeline(start=False, export_retries=0, **settings)
    first.open(blocking=False, configure_logs=False)
    try:
        files = send_series(first.node, tmp_path)
        wait_for(lambda: KEPT in outbox_log.text, 30, "a failed delivery")
    finally:
        first.close()
    items = sorted((tmp_path / "data" / "outbox").iterdir())
    assert items and all(json.loads((i / "destination.json").read_text())["tls"] for i in items)
    peer.start()
    second = CopyPipeline(start=False, **settings)
    second.open(blocking=False, configure_logs=False)
    try:
        delivered(peer, files)
        wait_for(lambda: second.node.counters.delivered == 1, 10, "the delivery")
        assert second.node.counters.rounds_started == 0, "not processed again"
    finally:
        second.close()
        peer.stop()


def test_a_worker_sends_to_a_tls_address_with_the_nodes_files(
    make_node, tmp_path: Path, server_pair: SelfSigned
):
    peer = StoreSCPPeer(tmp_path / "pacs", tls=server_pair)
    try:
        (tmp_path / "records" / "endpoint.txt").write_text(peer.endpoint())
        node = make_node(WorkerSendsPipeline, tls_ca_certificates=server_pair.certificate)
        files = send_series(node, tmp_path, count=2)
        delivered(peer, files)
        wait_for(lambda: node.counters.rounds_succeeded == 1, 30, "the round to succeed")
    finally:
        peer.stop()
