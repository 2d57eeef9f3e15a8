"""Orthanc as a PACS speaking DICOM TLS (PS3.15 Annex B), mutual TLS on both sides.

First the Orthanc configuration itself, proved with dcmtk (``echoscu``/``storescu``
``+tls`` to Orthanc's TLS port, Orthanc sending to ``storescp +tls``); then the node
with Orthanc in both directions: the node exports to Orthanc over TLS, Orthanc stores
and echoes to the node's TLS port, and an Orthanc whose certificate the node does not
trust is refused. Certificates are self-signed and each is its own CA."""

import json
import logging
import subprocess
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sample_pipelines import MARK, CTCopyPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.tls import SelfSigned, make_self_signed
from support import (
    OrthancPeer,
    OrthancTLS,
    StoreSCPPeer,
    dcmtk_tls_options,
    free_port,
    storescu,
    wait_for,
)
from support import sop_uids as sop_instance_uids


@dataclass(frozen=True)
class Identities:
    orthanc: SelfSigned
    node: SelfSigned  # also dcmtk's identity in the dcmtk-only tests
    stranger: SelfSigned  # trusted by nobody


@pytest.fixture
def identities(tmp_path: Path) -> Identities:
    return Identities(
        orthanc=make_self_signed(tmp_path / "tls-orthanc", common_name="ORTHANC"),
        node=make_self_signed(tmp_path / "tls-node", common_name="DICOMFLOW"),
        stranger=make_self_signed(tmp_path / "tls-stranger", common_name="STRANGER"),
    )


def orthanc_tls(identity: SelfSigned, *trusted: SelfSigned) -> OrthancTLS:
    """Orthanc with ``identity``, trusting ``trusted`` and requiring a peer certificate."""
    return OrthancTLS(
        identity.certificate, identity.private_key, tuple(t.certificate for t in trusted)
    )


@pytest.fixture
def tls_orthanc(tmp_path: Path, identities: Identities) -> Iterator[OrthancPeer]:
    """Orthanc on DICOM TLS trusting the node's certificate only."""
    pacs = OrthancPeer(tmp_path / "orthanc", tls=orthanc_tls(identities.orthanc, identities.node))
    yield pacs
    pacs.stop()


def dcmtk(tool: str, identity: SelfSigned, trusted: SelfSigned, *arguments: str) -> str:
    """Run a dcmtk tool over TLS as ``identity`` trusting ``trusted``; its output (stderr
    included) if it succeeded, else an AssertionError."""
    options = dcmtk_tls_options(identity.certificate, identity.private_key, trusted.certificate)
    command = [tool, *options, "-aet", "DCMTK", "-aec", "ORTHANC", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"{tool} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout + result.stderr


def orthanc_sop_instance_uids(pacs: OrthancPeer) -> set[str]:
    uids = set()
    for orthanc_id in pacs.rest("GET", "/instances"):
        tags = pacs.rest("GET", f"/instances/{orthanc_id}/simplified-tags")
        uids.add(tags["SOPInstanceUID"])
    return uids


# --- Orthanc's DICOM TLS configuration, proved with dcmtk -------------------------------


def test_dcmtk_echoes_and_stores_to_orthanc_over_tls(
    tls_orthanc: OrthancPeer, identities: Identities, tmp_path: Path
):
    port = str(tls_orthanc.dicom_port)
    dcmtk("echoscu", identities.node, identities.orthanc, "127.0.0.1", port)
    files = write_series(make_ct_series(3, rows=32, columns=32), tmp_path / "ct")
    dcmtk("storescu", identities.node, identities.orthanc, "127.0.0.1", port, *map(str, files))
    assert orthanc_sop_instance_uids(tls_orthanc) == sop_instance_uids(files)


def test_orthanc_tls_port_refuses_plain_and_untrusted_peers(
    tls_orthanc: OrthancPeer, identities: Identities
):
    port = str(tls_orthanc.dicom_port)
    plain = subprocess.run(
        ["echoscu", "-aec", "ORTHANC", "127.0.0.1", port], capture_output=True, timeout=60
    )
    assert plain.returncode != 0
    with pytest.raises(AssertionError, match="echoscu failed"):
        dcmtk("echoscu", identities.stranger, identities.orthanc, "127.0.0.1", port)


def test_orthanc_sends_and_echoes_to_storescp_over_tls(tmp_path: Path, identities: Identities):
    options = dcmtk_tls_options(
        identities.node.certificate, identities.node.private_key, identities.orthanc.certificate
    )
    peer = StoreSCPPeer(tmp_path / "received", ae_title="STORESCP", options=("+xa", *options))
    pacs = OrthancPeer(
        tmp_path / "orthanc",
        modalities={"scp": f"{peer.endpoint()}?tls"},
        tls=orthanc_tls(identities.orthanc, identities.node),
    )
    try:
        files = write_series(make_ct_series(3, rows=32, columns=32), tmp_path / "ct")
        ids = [pacs.rest("POST", "/instances", path.read_bytes())["ID"] for path in files]
        pacs.rest("POST", "/modalities/scp/echo", "{}")
        pacs.rest("POST", "/modalities/scp/store", json.dumps(ids))
        wait_for(lambda: len(peer.files()) == len(files), timeout_s=30, what="storescp files")
        assert sop_instance_uids(peer.files()) == sop_instance_uids(files)
    finally:
        pacs.stop()
        peer.stop()


def test_orthanc_cannot_echo_a_storescp_it_does_not_trust(tmp_path: Path, identities: Identities):
    options = dcmtk_tls_options(
        identities.stranger.certificate,
        identities.stranger.private_key,
        identities.orthanc.certificate,
    )
    peer = StoreSCPPeer(tmp_path / "received", ae_title="STORESCP", options=("+xa", *options))
    pacs = OrthancPeer(
        tmp_path / "orthanc",
        modalities={"scp": f"{peer.endpoint()}?tls"},
        tls=orthanc_tls(identities.orthanc, identities.node),
    )
    try:
        with pytest.raises(urllib.error.HTTPError):
            pacs.rest("POST", "/modalities/scp/echo", "{}")
    finally:
        pacs.stop()
        peer.stop()


# --- the node and Orthanc, mutual TLS both ways -----------------------------------------


def node_tls(identities: Identities, tls_port: int) -> dict[str, Any]:
    """The node's TLS settings: its identity, trusting Orthanc's certificate (as the
    server it exports to and as the client that sends to it), TLS on ``tls_port``."""
    return {
        "tls_certificate": identities.node.certificate,
        "tls_private_key": identities.node.private_key,
        "tls_ca_certificates": identities.orthanc.certificate,
        "tls_port": tls_port,
    }


def marked_in(pacs: OrthancPeer) -> set[str]:
    """SOP instance UIDs of the pipeline's results that Orthanc holds."""
    found = set()
    for orthanc_id in pacs.rest("GET", "/instances"):
        tags = pacs.rest("GET", f"/instances/{orthanc_id}/simplified-tags")
        if tags.get("ImageComments") == MARK:
            found.add(tags["SOPInstanceUID"])
    return found


def test_the_node_exports_to_orthanc_over_mutual_tls(
    make_node, tls_orthanc: OrthancPeer, identities: Identities, tmp_path: Path
):
    node = make_node(
        CTCopyPipeline,
        endpoints=[f"{tls_orthanc.endpoint()}?tls"],
        **node_tls(identities, free_port()),
    )
    files = write_series(make_ct_series(4, rows=32, columns=32), tmp_path / "ct")
    storescu(node.port, files)  # in on the plain port
    wanted = sop_instance_uids(files)
    wait_for(lambda: marked_in(tls_orthanc) == wanted, timeout_s=60, what="results in Orthanc")


def test_orthanc_echoes_and_stores_to_the_node_over_mutual_tls(
    make_node, identities: Identities, tmp_path: Path
):
    """The round trip over TLS: Orthanc sends to the node's TLS port, the pipeline runs,
    its results go back to Orthanc's TLS port."""
    tls_port = free_port()
    pacs = OrthancPeer(
        tmp_path / "orthanc",
        modalities={"dicomflow": f"DICOMFLOW@127.0.0.1:{tls_port}?tls"},
        tls=orthanc_tls(identities.orthanc, identities.node),
    )
    try:
        node = make_node(
            CTCopyPipeline, endpoints=[f"{pacs.endpoint()}?tls"], **node_tls(identities, tls_port)
        )
        assert node.tls_port == tls_port != node.port
        pacs.rest("POST", "/modalities/dicomflow/echo", "{}")
        files = write_series(make_ct_series(6, rows=32, columns=32), tmp_path / "ct")
        ids = [pacs.rest("POST", "/instances", path.read_bytes())["ID"] for path in files]
        pacs.rest("POST", "/modalities/dicomflow/store", json.dumps(ids))
        wanted = sop_instance_uids(files)
        wait_for(lambda: marked_in(pacs) == wanted, timeout_s=60, what="results in Orthanc")
    finally:
        pacs.stop()


def test_the_node_refuses_an_orthanc_whose_certificate_it_does_not_trust(
    make_node, identities: Identities, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    tls_port = free_port()
    pacs = OrthancPeer(
        tmp_path / "orthanc",
        modalities={"dicomflow": f"DICOMFLOW@127.0.0.1:{tls_port}?tls"},
        tls=orthanc_tls(identities.stranger, identities.node),  # trusts the node
    )
    try:
        node = make_node(CTCopyPipeline, **node_tls(identities, tls_port))
        with caplog.at_level(logging.WARNING, logger="dicomflow"):
            with pytest.raises(urllib.error.HTTPError):
                pacs.rest("POST", "/modalities/dicomflow/echo", "{}")
            files = write_series(make_ct_series(2, rows=32, columns=32), tmp_path / "ct")
            ids = [pacs.rest("POST", "/instances", path.read_bytes())["ID"] for path in files]
            with pytest.raises(urllib.error.HTTPError):
                pacs.rest("POST", "/modalities/dicomflow/store", json.dumps(ids))
        refusals = [
            r.getMessage() for r in caplog.records if "TLS handshake failed" in r.getMessage()
        ]
        assert refusals and all("127.0.0.1" in message for message in refusals)
        assert node.counters.received == 0
    finally:
        pacs.stop()
