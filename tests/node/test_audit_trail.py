"""The audit trail of a running node, with dcmtk peers: one line per association
received (stored, rejected, refused), one per association its export opened, and never
a patient's name, ID or birth date."""

import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
from sample_pipelines import CopyPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from support import StoreSCPPeer, association_request, storescu, wait_for

PATIENT_ID, PATIENT_NAME, BIRTH_DATE = "SECRETPID42", "Secretname^Zed", "19011231"
SECRETS = (PATIENT_ID.encode(), b"Secretname", BIRTH_DATE.encode())
RECEIVERS = ["lean", "pynetdicom"]


def secret_series(folder: Path, count: int = 3) -> tuple[list[Path], str]:
    """Instances carrying distinctive patient values; their files and study UID."""
    datasets = make_ct_series(
        count, rows=16, columns=16, patient_id=PATIENT_ID, patient_name=PATIENT_NAME
    )
    for dataset in datasets:
        dataset.PatientBirthDate = BIRTH_DATE
    return write_series(datasets, folder), str(datasets[0].StudyInstanceUID)


def records(node: Node, **matching: Any) -> list[dict[str, Any]]:
    """The node's audit records with the ``matching`` values (each line must be JSON)."""
    path = node.settings.audit_log_file()
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in found if all(r.get(key) == value for key, value in matching.items())]


def assert_no_patient_values(node: Node) -> None:
    written = node.settings.audit_log_file().read_bytes()
    for secret in SECRETS:
        assert secret not in written, secret


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_received_and_an_exported_association_each_make_one_record(
    make_node, storescp: StoreSCPPeer, tmp_path: Path, receiver: str
):
    node = make_node(CopyPipeline, endpoints=[storescp.endpoint()], receiver=receiver)
    files, study = secret_series(tmp_path / "series")
    storescu(node.port, files, aet="MODALITY")

    wait_for(lambda: records(node, direction="received"), 10, "the received record")
    (received,) = records(node, direction="received")
    assert received["type"] == "association"
    assert (received["calling_ae_title"], received["called_ae_title"]) == ("MODALITY", "DICOMFLOW")
    assert received["peer_ip"] == "127.0.0.1" and received["peer_port"] > 0
    assert (received["stored"], received["refused"]) == (3, 0)
    assert received["study_uids"] == [study]
    assert received["result"] == "released"
    assert received["tls"] == received["identity"] == received["peer_certificate"] == ""
    assert received["started"] <= received["ended"]

    wait_for(lambda: records(node, direction="sent"), 60, "the export's record")
    (sent,) = records(node, direction="sent")
    assert (sent["calling_ae_title"], sent["called_ae_title"]) == ("DICOMFLOW", "PACS")
    assert sent["peer_ip"] == "127.0.0.1" and sent["peer_port"] == storescp.port
    assert (sent["sent"], sent["failed"], sent["result"]) == (3, 0, "released")

    assert_no_patient_values(node)
    path = node.settings.audit_log_file()
    assert path == node.settings.data_directory / "audit" / "audit.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_rejected_association_is_recorded(make_node, tmp_path: Path, receiver: str):
    node = make_node(CopyPipeline, allowed_ae_titles=["GOOD"], receiver=receiver)
    files, _ = secret_series(tmp_path / "series", 1)
    assert storescu(node.port, files, aet="EVIL", check=False).returncode != 0

    wait_for(lambda: records(node, calling_ae_title="EVIL"), 10, "the rejection's record")
    (rejected,) = records(node, calling_ae_title="EVIL")
    assert rejected["result"].startswith("rejected:")
    assert rejected["result"] in ("rejected: calling AE title", "rejected: AE title")
    assert rejected["stored"] == 0 and rejected["peer_ip"] == "127.0.0.1"


@pytest.mark.parametrize("receiver", RECEIVERS)
def test_a_connection_from_a_refused_ip_is_recorded(make_node, tmp_path: Path, receiver: str):
    node = make_node(CopyPipeline, allowed_ips=["192.0.2.0/24"], receiver=receiver)
    files, _ = secret_series(tmp_path / "series", 1)
    assert storescu(node.port, files, check=False).returncode != 0

    wait_for(lambda: records(node, result="refused: ip"), 10, "the refusal's record")
    refused = records(node, result="refused: ip")[0]
    assert refused["peer_ip"] == "127.0.0.1" and refused["peer_port"] > 0
    assert refused["calling_ae_title"] == "" and refused["stored"] == 0


def test_hostile_ae_titles_stay_one_json_line(make_node):
    """Quotes and braces reach the record escaped; NUL, line breaks, backslashes and
    bytes beyond ASCII abort the association before its AE titles are believed (the
    record says so); tests/test_audit.py writes those (and 10 kB values) directly."""
    node = make_node(CopyPipeline, allowed_ae_titles=["GOOD"])
    quoted = b'"},{"x":"</a>'
    attempts = [
        (b"DICOMFLOW", quoted, 0x03),  # A-ASSOCIATE-RJ
        (quoted, quoted, 0x03),
        (b"DICOMFLOW", b"NUL\x00LF\nCR\r\\", 0x07),  # A-ABORT
        (b"\xff" * 16, quoted, 0x07),
    ]
    for count, (called, calling, answer) in enumerate(attempts, 1):
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as connection:
            connection.sendall(association_request(called=called, calling=calling))
            assert connection.recv(64)[0] == answer
        wait_for(lambda: len(records(node)) >= count, 10, f"record {count}")  # noqa: B023

    lines = node.settings.audit_log_file().read_text().splitlines()
    assert len(lines) == 4 and all(line.isascii() and line.isprintable() for line in lines)
    values = [json.loads(line) for line in lines]
    assert [v["calling_ae_title"] for v in values] == [quoted.decode(), quoted.decode(), "", ""]
    assert [v["result"] for v in values] == [
        "rejected: calling AE title",
        "rejected: called AE title",
        "aborted: protocol error",
        "aborted: protocol error",
    ]
