"""De-identified outputs with real peers: storescu -> node -> storescp.

An endpoint ``AE@host:port?deid`` gets de-identified instances (pseudonyms of the node's
key, PatientIdentityRemoved, no original identifier in the bytes) while a plain endpoint
of the same pipeline gets the originals; ``DicomOutput``/``FileOutput`` with
``deidentify=True``; a burned-in secondary capture is refused (the round fails with its
inputs kept, a log line names its SOP class); and the outbox's retries send the copies
de-identified once (the same pseudonyms, never pseudonyms of pseudonyms).
"""

import json
import logging
from pathlib import Path

import pydicom
import pytest
from deid_pipelines import DeidOutputsPipeline
from pydicom import Dataset
from sample_pipelines import CopyPipeline

from dicomflow.address import Address
from dicomflow.dicom.deid import Deidentifier
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.deidentification import deidentifier_from_settings
from dicomflow.engine.deidentified_export import deidentify_folder, shown_reason
from dicomflow.engine.export import Export
from dicomflow.engine.node import Node
from dicomflow.engine.outbox import Outbox
from dicomflow.engine.round_store import Round
from dicomflow.errors import DeidError
from dicomflow.node.output import DicomOutput, write_outputs
from dicomflow.settings import NodeSettings
from support import PeerStarter, StoreSCPPeer, free_port, storescu, wait_for

PATIENT_ID = "PAT-ORIG-7731"
PATIENT_NAME = "Original^Patricia"
BIRTH_DATE = "19610417"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def identified_series(tmp_path: Path, count: int = 3) -> tuple[list[Dataset], list[Path]]:
    series = make_ct_series(count, patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
    for dataset in series:
        dataset.PatientBirthDate = BIRTH_DATE
        dataset.AccessionNumber = "ACC-99812"
    return series, write_series(series, tmp_path / "series")


def identifiers(series: list[Dataset]) -> set[bytes]:
    values = {PATIENT_ID, PATIENT_NAME, BIRTH_DATE, "ACC-99812"}
    for dataset in series:
        values |= {dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID}
    return {value.encode() for value in values}


def deidentifier(node: Node | NodeSettings) -> Deidentifier:
    return deidentifier_from_settings(node if isinstance(node, NodeSettings) else node.settings)


def check_deidentified(files: list[Path], series: list[Dataset], node: Node | NodeSettings) -> None:
    """Every file is a de-identified copy of one of ``series`` with the node's pseudonyms,
    and holds no original identifier anywhere in its bytes."""
    expected = {deidentifier(node).identity(dataset) for dataset in series}
    received = [pydicom.dcmread(path) for path in files]
    assert {d.SOPInstanceUID for d in received} == {e.sop_instance_uid for e in expected}
    for dataset in received:
        assert dataset.PatientID == next(iter(expected)).patient_id != PATIENT_ID
        assert dataset.PatientIdentityRemoved == "YES"
        for uid in (dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID):
            assert uid.startswith("2.25.")
    for path in files:
        data = path.read_bytes()
        assert not [value for value in identifiers(series) if value in data], path


def test_a_deid_endpoint_gets_pseudonyms_and_a_plain_endpoint_the_originals(
    make_node, tmp_path: Path
):
    plain = StoreSCPPeer(tmp_path / "plain")
    private = StoreSCPPeer(tmp_path / "private", ae_title="RESEARCH")
    try:
        endpoints = [plain.endpoint(), f"{private.endpoint()}?deid"]
        node = make_node(CopyPipeline, endpoints=endpoints)
        series, files = identified_series(tmp_path)
        storescu(node.port, files)
        wait_for(lambda: len(plain.files()) == len(private.files()) == 3, 30, "both endpoints")
        originals = [pydicom.dcmread(path) for path in plain.files()]
        assert {d.SOPInstanceUID for d in originals} == {d.SOPInstanceUID for d in series}
        assert {d.PatientID for d in originals} == {PATIENT_ID}
        check_deidentified(private.files(), series, node)
    finally:
        plain.stop()
        private.stop()


def test_dicom_and_file_outputs_marked_deidentify(make_node, tmp_path: Path):
    peer = StoreSCPPeer(tmp_path / "pacs")
    try:
        (tmp_path / "records" / "endpoint.txt").write_text(peer.endpoint())
        node = make_node(DeidOutputsPipeline)
        series, files = identified_series(tmp_path)
        storescu(node.port, files)
        folder, plain = tmp_path / "records" / "files", tmp_path / "records" / "plain"
        wait_for(lambda: len(peer.files()) == 3, 30, "the de-identified DicomOutput")
        wait_for(lambda: len(list(plain.rglob("*.dcm"))) == 3, 30, "the plain FileOutput")
        wait_for(lambda: len(list(folder.rglob("*.dcm"))) == 3, 30, "the de-identified files")
        check_deidentified(peer.files(), series, node)
        written = sorted(folder.rglob("*.dcm"))
        check_deidentified(written, series, node)
        for path in written:  # laid out by the pseudonymous UIDs, no original one a path
            dataset = pydicom.dcmread(path)
            relative = path.relative_to(folder).parts
            assert relative == (
                dataset.StudyInstanceUID,
                dataset.SeriesInstanceUID,
                f"{dataset.SOPInstanceUID}.dcm",
            )
        assert {pydicom.dcmread(p).PatientID for p in plain.rglob("*.dcm")} == {PATIENT_ID}
    finally:
        peer.stop()


def secondary_capture(tmp_path: Path) -> list[Path]:
    series = make_ct_series(1, patient_id=PATIENT_ID, patient_name=PATIENT_NAME)
    for dataset in series:
        dataset.SOPClassUID = SECONDARY_CAPTURE
        dataset.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        dataset.BurnedInAnnotation = "YES"
    return write_series(series, tmp_path / "capture")


def test_a_burned_in_secondary_capture_is_refused_and_its_round_fails(
    make_node, tmp_path: Path, storescp: StoreSCPPeer, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="dicomflow")
    node = make_node(CopyPipeline, endpoints=[storescp.endpoint(), f"{storescp.endpoint()}?deid"])
    files = secondary_capture(tmp_path)
    storescu(node.port, files)
    wait_for(lambda: node.counters.rounds_failed == 1, 30, "the round to fail")
    failed = list((tmp_path / "data" / "failed").iterdir())
    assert len(failed) == 1 and len(list((failed[0] / "instances").glob("*.dcm"))) == 1
    error = json.loads((failed[0] / "error.json").read_text())["error"]
    assert "Secondary Capture Image Storage" in error and "BurnedInAnnotation" in error
    lines = [r.getMessage() for r in caplog.records if "de-identified export" in r.getMessage()]
    assert len(lines) == 1
    assert SECONDARY_CAPTURE in lines[0] and "refused" in lines[0]
    text = caplog.text
    assert PATIENT_ID not in text and "Patricia" not in text
    assert node.counters.rounds_succeeded == 0
    assert storescp.files() == []  # nothing of the round was sent, not even to the plain one
    assert not list((tmp_path / "data" / "outbox").iterdir())


def test_the_outbox_retries_a_deid_endpoint_with_the_same_pseudonyms(
    make_node, tmp_path: Path, storescp_on: PeerStarter
):
    port = free_port()  # nobody listens there yet
    node = make_node(
        CopyPipeline,
        endpoints=[f"PACS@127.0.0.1:{port}?deid"],
        export_retries=1,
        outbox_retry_interval_s=3600,
    )
    series, files = identified_series(tmp_path)
    storescu(node.port, files)
    outbox = tmp_path / "data" / "outbox"
    wait_for(lambda: len(list(outbox.glob("*/last-error.json"))) == 1, 30, "a failed attempt")
    waiting = sorted(outbox.glob("*/*.dcm"))
    destination = json.loads(next(outbox.glob("*/destination.json")).read_text())
    assert destination["deidentify"] is True
    check_deidentified(waiting, series, node)  # stored de-identified, once
    pseudonyms = {pydicom.dcmread(path).SOPInstanceUID for path in waiting}

    received = storescp_on(port)
    node.outbox.retry_now()
    wait_for(lambda: len(list(received.glob("CT*"))) == 3, 30, "the retried results")
    check_deidentified(sorted(received.glob("CT*")), series, node)
    assert {pydicom.dcmread(path).SOPInstanceUID for path in received.glob("CT*")} == pseudonyms


class _KeptRounds:
    """A round store whose rounds are never finished: the export is run again, as after a
    restart that came before the round's folder was removed."""

    def finish(self, job: Round) -> None:
        pass


def test_a_restart_exports_a_deidentified_output_once_and_never_its_originals(tmp_path: Path):
    settings = NodeSettings(data_directory=tmp_path / "data")
    outbox = Outbox(tmp_path / "data" / "outbox", calling_ae_title="NODE")  # not started
    export = Export(
        outbox=outbox,
        archive_outbox=None,  # type: ignore[arg-type]  # no archive output here
        store=_KeptRounds(),  # type: ignore[arg-type]
        settings=settings,
    )
    series, _ = identified_series(tmp_path)
    job = Round("a" * 32, "p", "patient", {}, tmp_path / "round")
    address = Address("127.0.0.1", 104, "RESEARCH")
    write_outputs([DicomOutput([(address, series)], deidentify=True)], job.output_dir)
    originals = {path.name: path.read_bytes() for path in job.output_dir.glob("*/*.dcm")}

    export.round(job)
    [item] = outbox.items()
    first = {path.name: path.read_bytes() for path in item.glob("*.dcm")}
    for name, data in originals.items():  # the originals come back (a crash before removal)
        (job.output_dir / "000-000").mkdir(exist_ok=True)
        (job.output_dir / "000-000" / name).write_bytes(data)
    export.round(job)
    export.round(job)

    assert outbox.items() == [item]
    assert {path.name: path.read_bytes() for path in item.glob("*.dcm")} == first
    check_deidentified(sorted(item.glob("*.dcm")), series, settings)
    assert not list(job.output_dir.glob("*.deid*"))


def test_a_failure_shows_no_value_of_the_instance(tmp_path: Path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "1.2.3.dcm").write_bytes(b"DICM" + PATIENT_ID.encode() * 40)
    settings = NodeSettings(data_directory=tmp_path / "data")

    with pytest.raises(DeidError) as failed:
        deidentify_folder(folder, deidentifier(settings))

    shown = shown_reason(failed.value)
    assert shown == "instance of an unknown SOP class could not be de-identified (DeidError)"
    assert not (folder.parent / "results.deid").exists()
    assert not (folder.parent / "results.deid.partial").exists()
