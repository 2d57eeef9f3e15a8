"""The lean acceptor as a Query/Retrieve SCP, against dcmtk's findscu, getscu and movescu
(and pynetdicom or raw PDUs where a status or a malformed message must be seen), over a
folder of pydicom's test files and synthetic series."""

import json
import logging
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    Verification,
)
from qr_support import ABORTED, FolderProvider, raw_find

from dicomflow import tls
from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series
from dicomflow.dicom.response_encoder import ResponsePlan
from dicomflow.errors import QueryKeyError
from dicomflow.net import requestor
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.query_retrieve import FindAnswer, QueryRequest, RetrievedInstance
from dicomflow.net.storage import ReceivedInstance
from dicomflow.tls import SelfSigned, TLSFiles
from support import OrthancPeer, StoreSCPPeer, dcmtk_tls_options, free_port, storescu

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("findscu", "getscu", "movescu", "storescp")),
    reason="dcmtk is not installed",
)

CORPUS = ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm")


class Node:
    """The lean acceptor with a folder provider; ``stored`` what peers C-STORE to it."""

    def __init__(self, provider: FolderProvider) -> None:
        self.stored: list[ReceivedInstance] = []
        self.provider = provider
        self.scp = LeanStoreSCP(
            ae_title="DICOMFLOW",
            ip="127.0.0.1",
            port=0,
            on_store=self._store,
            query_retrieve=self.provider,
        )

    def _store(self, instance: ReceivedInstance) -> int:
        self.stored.append(instance)
        return 0x0000


def _series(folder: Path, patient: str, name: str, date: str, count: int, seed: int) -> None:
    for index, dataset in enumerate(
        make_ct_series(count, patient_id=patient, patient_name=name, seed=seed)
    ):
        dataset.StudyDate = date
        dataset.save_as(folder / f"{patient}-{seed}-{index}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two patients (three studies of synthetic CT) and pydicom's CT, MR and RLE files."""
    folder = tmp_path_factory.mktemp("archive")
    _series(folder, "PAT_A", "Doe^Jane", "20240110", 3, seed=1)
    _series(folder, "PAT_A", "Doe^Jane", "20240320", 2, seed=2)
    _series(folder, "PAT_B", "Roe^Rick", "20230505", 2, seed=3)
    for name in CORPUS:
        shutil.copy(str(get_testdata_file(name)), folder / name)
    return folder


@pytest.fixture(scope="module")
def destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSCPPeer]:
    peer = StoreSCPPeer(tmp_path_factory.mktemp("pacs"))
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def node(archive: Path, destination: StoreSCPPeer) -> Iterator[Node]:
    address = Address(ip="127.0.0.1", port=destination.port, ae_title="PACS")
    running = Node(FolderProvider(archive, {"PACS": address}))
    yield running
    running.scp.close()


def findscu(node: Node, model: str, out: Path, *keys: str, extra: tuple[str, ...] = ()) -> str:
    """Run findscu (``-P`` or ``-S``) with ``keys``; the responses land in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    command = ["findscu", "-v", "-aec", "DICOMFLOW", model, "-X", "-od", str(out), *extra]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(node.scp.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def responses(out: Path) -> list[Dataset]:
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


# -- C-FIND ---------------------------------------------------------------------------------


def test_patient_level_exact_match_is_trimmed_to_the_keys_asked_for(
    node: Node, tmp_path: Path
) -> None:
    log = findscu(
        node, "-P", tmp_path, "QueryRetrieveLevel=PATIENT", "PatientID=PAT_A", "PatientName"
    )
    assert "Received Final Find Response (Success)" in log
    (found,) = responses(tmp_path)
    assert found.PatientID == "PAT_A"
    assert str(found.PatientName) == "Doe^Jane"
    assert found.QueryRetrieveLevel == "PATIENT"
    # the provider returns whole datasets: the SCP keeps only what was asked for
    assert "StudyInstanceUID" not in found
    assert "PixelData" not in found
    assert "Modality" not in found


def test_study_root_wildcard_and_date_range(node: Node, tmp_path: Path) -> None:
    findscu(
        node,
        "-S",
        tmp_path,
        "QueryRetrieveLevel=STUDY",
        "PatientName=doe*",
        "StudyDate=20240101-20240228",
        "StudyInstanceUID",
    )
    (found,) = responses(tmp_path)
    assert found.StudyDate == "20240110"
    assert str(found.PatientName) == "Doe^Jane"
    assert found.StudyInstanceUID


def test_patient_root_study_level_finds_every_study_of_a_patient(
    node: Node, tmp_path: Path
) -> None:
    findscu(node, "-P", tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=PAT_A", "StudyDate")
    assert sorted(r.StudyDate for r in responses(tmp_path)) == ["20240110", "20240320"]


def test_series_and_image_levels_with_a_uid_list(node: Node, tmp_path: Path) -> None:
    ct, mr = (dcmread(get_testdata_file(name)) for name in CORPUS[:2])
    findscu(
        node,
        "-S",
        tmp_path / "series",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={ct.StudyInstanceUID}",
        "SeriesInstanceUID",
        "Modality",
    )
    (series,) = responses(tmp_path / "series")
    assert series.SeriesInstanceUID == ct.SeriesInstanceUID
    assert series.Modality == "CT"
    findscu(
        node,
        "-S",
        tmp_path / "image",
        "QueryRetrieveLevel=IMAGE",
        f"SOPInstanceUID={ct.SOPInstanceUID}\\{mr.SOPInstanceUID}",
        "SOPClassUID",
    )
    found = {r.SOPInstanceUID: r.SOPClassUID for r in responses(tmp_path / "image")}
    assert found == {ct.SOPInstanceUID: ct.SOPClassUID, mr.SOPInstanceUID: mr.SOPClassUID}


def test_no_match_is_success_with_no_pending_response(node: Node, tmp_path: Path) -> None:
    log = findscu(node, "-S", tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=NOBODY")
    assert "Received Final Find Response (Success)" in log
    assert responses(tmp_path) == []


class Endless:
    """A provider matching a million studies, produced one at a time."""

    def __init__(self) -> None:
        self.yielded = 0

    def find(self, request: object) -> Iterator[Dataset]:
        for number in range(1_000_000):
            self.yielded += 1
            found = Dataset()
            found.QueryRetrieveLevel = "STUDY"
            found.StudyInstanceUID = f"1.2.3.{number}"
            found.PatientID = f"P{number}"
            yield found

    def retrieve(self, request: object) -> list[object]:
        return []

    def destination(self, ae_title: str) -> None:
        return None


def test_findscu_cancel_stops_a_million_matches(tmp_path: Path) -> None:
    provider = Endless()
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW",
        ip="127.0.0.1",
        port=0,
        on_store=lambda _: 0,
        query_retrieve=provider,  # type: ignore[arg-type]
    )
    try:
        command = ["findscu", "-v", "-aec", "DICOMFLOW", "-S", "--cancel", "3"]
        command += ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
        command += ["127.0.0.1", str(scp.port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        scp.close()
    log = done.stdout + done.stderr
    assert "Sending Cancel Request" in log, log
    assert "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in log
    assert provider.yielded < 100_000  # streamed and stopped, never one list


class JsonProvider:
    """Answers every C-FIND with the same catalog matches (DICOM JSON), as the engine
    does: encoded by the node's encoder, or by pydicom for what it does not write."""

    def __init__(self, results: list[dict[str, object]]) -> None:
        self.results = results

    def find(self, request: QueryRequest) -> Iterator[FindAnswer]:
        level = str(request.identifier.QueryRetrieveLevel)
        plan = ResponsePlan(request.identifier, level, "DICOMFLOW")
        return (plan.answer(result) for result in self.results)

    def retrieve(self, request: object) -> list[object]:
        return []

    def destination(self, ae_title: str) -> None:
        return None


@pytest.fixture(scope="module")
def json_node() -> Iterator[LeanStoreSCP]:
    names = [{"Alphabetic": "Müller^Jürgen", "Ideographic": "山田^太郎"}, {"Alphabetic": "Doe"}]
    results: list[dict[str, object]] = [
        {
            "0020000D": {"vr": "UI", "Value": [f"1.2.3.{number}"]},
            "00100010": {"vr": "PN", "Value": [name]},
            "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
            "00201208": {"vr": "IS", "Value": [number * 7]},
        }
        for number, name in enumerate(names)
    ]
    # not a number: pydicom answers this one, with the count empty and a log line
    results.append(
        {
            "0020000D": {"vr": "UI", "Value": ["1.2.3.9"]},
            "00201208": {"vr": "IS", "Value": ["many"]},
        }
    )
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW",
        ip="127.0.0.1",
        port=0,
        on_store=lambda _: 0,
        query_retrieve=JsonProvider(results),  # type: ignore[arg-type]
    )
    yield scp
    scp.close()


@pytest.mark.parametrize("syntax", ["-xi", "-xe"])
def test_findscu_reads_the_encoders_answers(
    json_node: LeanStoreSCP, tmp_path: Path, syntax: str
) -> None:
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName", "ModalitiesInStudy"]
    keys += ["NumberOfStudyRelatedInstances", "StudyDate"]
    command = ["findscu", "-v", "-aec", "DICOMFLOW", "-S", syntax, "-X", "-od", str(tmp_path)]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(json_node.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert "Received Final Find Response (Success)" in done.stdout + done.stderr
    first, second, third = [dcmread(path) for path in sorted(tmp_path.glob("rsp*.dcm"))]
    assert first.SpecificCharacterSet == "ISO_IR 192"
    assert (first.PatientName.alphabetic, first.PatientName.ideographic) == (
        "Müller^Jürgen",
        "山田^太郎",
    )
    assert first.ModalitiesInStudy == ["CT", "MR"]
    assert first.NumberOfStudyRelatedInstances == 0
    assert first.StudyDate == ""  # asked for, the match has none: sent empty
    assert "SpecificCharacterSet" not in second
    assert (second.StudyInstanceUID, second.NumberOfStudyRelatedInstances) == ("1.2.3.1", 7)
    assert "RetrieveAETitle" not in second  # not asked for
    assert third.StudyInstanceUID == "1.2.3.9"
    assert third.NumberOfStudyRelatedInstances is None


# -- hostile identifiers ---------------------------------------------------------------------


def _find(port: int, identifier: Dataset, model: object) -> list[int]:
    """The statuses of one C-FIND over pynetdicom; checks the association still answers."""
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(model)
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", port, ae_title="DICOMFLOW")
    assert association.is_established
    try:
        statuses = [int(s.Status) for s, _ in association.send_c_find(identifier, model) if s]
        assert int(association.send_c_echo().Status) == 0x0000  # the association survived
    finally:
        association.release()
    return statuses


@pytest.mark.parametrize(
    ("key", "value", "status"),
    [
        ("PatientID", "X" * 10_000, 0xA900),
        ("PatientID", "A\x00B", 0xA900),
        ("QueryRetrieveLevel", "WARD", 0xC000),
        ("QueryRetrieveLevel", "../x", 0xC000),
    ],
)
def test_hostile_identifiers_fail_with_a_status_and_a_log_line(
    node: Node, caplog: pytest.LogCaptureFixture, key: str, value: str, status: int
) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    setattr(identifier, key, value)
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.qr_scp"):
        assert _find(node.scp.port, identifier, StudyRootQueryRetrieveInformationModelFind) == [
            status
        ]
    assert any("C-FIND from HOSTILE at 127.0.0.1" in r.getMessage() for r in caplog.records)


def test_patient_level_is_unknown_to_the_study_root_model(node: Node) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = ""
    assert _find(node.scp.port, identifier, StudyRootQueryRetrieveInformationModelFind) == [0xC000]
    statuses = _find(node.scp.port, identifier, PatientRootQueryRetrieveInformationModelFind)
    assert statuses == [0xFF00] * 5 + [0x0000]  # PAT_A, PAT_B and the corpus's three


@pytest.mark.parametrize(
    "malformed",
    [
        b"\x08\x00\x52\x00\x00\x00\x01\x00STUDY ",  # a value claiming 64 KiB
        b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY \xff\xff\xff",  # trailing bytes
        b"\xfe\xff\x00\xe0\xff\xff\xff\xff" * 4,  # items where elements belong
    ],
)
def test_malformed_identifier_bytes_get_a_failure(
    node: Node, caplog: pytest.LogCaptureFixture, malformed: bytes
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.qr_scp"):
        statuses = raw_find(node.scp.port, malformed)
    assert statuses in ([0xA900], [0xC000])
    assert any("C-FIND from REQUESTOR" in r.getMessage() for r in caplog.records)


# -- C-GET -----------------------------------------------------------------------------------


def getscu(node: Node, out: Path, *keys: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    command = ["getscu", "-v", "-aec", "DICOMFLOW", "-S", "-od", str(out)]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(node.scp.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def test_getscu_receives_a_study_with_counts(node: Node, archive: Path, tmp_path: Path) -> None:
    wanted = {dcmread(path).SOPInstanceUID for path in archive.glob("PAT_A-1-*.dcm")}
    study = dcmread(next(archive.glob("PAT_A-1-*.dcm"))).StudyInstanceUID
    log = getscu(node, tmp_path, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert "Number of Completed Suboperations : 3" in log, log
    assert "Number of Failed Suboperations    : 0" in log
    assert {dcmread(p).SOPInstanceUID for p in tmp_path.iterdir()} == wanted


def test_getscu_gets_a_compressed_instance_decoded(node: Node, tmp_path: Path) -> None:
    """getscu accepts only uncompressed syntaxes: the RLE file is re-encoded for it."""
    rle = dcmread(get_testdata_file("SC_rgb_rle.dcm"))
    log = getscu(node, tmp_path, "QueryRetrieveLevel=IMAGE", f"SOPInstanceUID={rle.SOPInstanceUID}")
    assert "Number of Completed Suboperations : 1" in log, log
    (received,) = [dcmread(p) for p in tmp_path.iterdir()]
    assert not received.file_meta.TransferSyntaxUID.is_compressed
    assert (received.pixel_array == rle.pixel_array).all()


# -- C-MOVE ----------------------------------------------------------------------------------


def movescu(node: Node, destination: str, *keys: str) -> str:
    command = ["movescu", "-v", "-aec", "DICOMFLOW", "-aem", destination, "-P"]
    for key in keys:
        command += ["-k", key]
    command += ["127.0.0.1", str(node.scp.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout + done.stderr


def test_movescu_sends_a_patient_to_storescp(
    node: Node, archive: Path, destination: StoreSCPPeer
) -> None:
    wanted = {dcmread(p).SOPInstanceUID for p in archive.glob("PAT_B-*.dcm")}
    log = movescu(node, "PACS", "QueryRetrieveLevel=PATIENT", "PatientID=PAT_B")
    assert "Received Final Move Response (Success)" in log, log
    assert "Received Move Response 1 (Pending)" in log
    received = {dcmread(p).SOPInstanceUID for p in destination.files()}
    assert wanted <= received


def test_movescu_to_an_unknown_destination_is_refused(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.qr_scp"):
        log = movescu(node, "NOWHERE", "QueryRetrieveLevel=PATIENT", "PatientID=PAT_B")
    assert "MoveDestinationUnknown" in log, log
    assert any("'NOWHERE' is not known" in r.getMessage() for r in caplog.records)


# -- storage still works ---------------------------------------------------------------------


def test_storage_still_works_on_the_same_node(node: Node, tmp_path: Path) -> None:
    paths = []
    for index, dataset in enumerate(make_ct_series(2, patient_id="NEW", seed=9)):
        paths.append(tmp_path / f"{index}.dcm")
        dataset.save_as(paths[-1], enforce_file_format=True)
    before = len(node.stored)
    storescu(node.scp.port, paths)
    assert len(node.stored) == before + 2
    assert {i.sop_class_uid for i in node.stored} == {CTImageStorage}


# -- failed sub-operations and limits ----------------------------------------------------------


class Flaky(FolderProvider):
    """Retrieves one more instance than the folder holds, whose read fails."""

    def retrieve(self, request: QueryRequest) -> list[RetrievedInstance]:
        def lost() -> bytes:
            raise OSError("the archive lost it")

        missing = RetrievedInstance(str(CTImageStorage), "1.2.3.4.5", "1.2.840.10008.1.2.1", lost)
        return [*super().retrieve(request), missing]


@pytest.fixture(scope="module")
def flaky(archive: Path) -> Iterator[Node]:
    down = Address(ip="127.0.0.1", port=free_port(), ae_title="DOWN")
    running = Node(Flaky(archive, {"DOWN": down}))
    yield running
    running.scp.close()


def test_getscu_counts_a_failed_sub_operation(flaky: Node, tmp_path: Path) -> None:
    log = getscu(flaky, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=PAT_B")
    assert "Number of Completed Suboperations : 2" in log, log
    assert "Number of Failed Suboperations    : 1" in log
    assert "Received C-GET Response (Warning: SubOperationsCompleteOneOrMoreFailures)" in log
    assert len(list(tmp_path.iterdir())) == 2


def test_movescu_to_a_destination_that_is_down_fails_every_sub_operation(
    flaky: Node, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dicomflow.net.qr_scp"):
        log = movescu(flaky, "DOWN", "QueryRetrieveLevel=PATIENT", "PatientID=PAT_B")
    assert "Received Final Move Response (Refused: OutOfResourcesSubOperations)" in log, log
    assert any("3 failed" in r.getMessage() for r in caplog.records)


def test_a_failed_move_lists_the_failed_instances(flaky: Node, archive: Path) -> None:
    ae = AE(ae_title="MOVER")
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelMove)
    association = ae.associate("127.0.0.1", flaky.scp.port, ae_title="DICOMFLOW")
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "PAT_B"
    try:
        model = PatientRootQueryRetrieveInformationModelMove
        (final, failed), *_ = reversed(list(association.send_c_move(identifier, "DOWN", model)))
    finally:
        association.release()
    assert final.Status == 0xA702
    assert final.NumberOfFailedSuboperations == 3
    wanted = {dcmread(p).SOPInstanceUID for p in archive.glob("PAT_B-*.dcm")} | {"1.2.3.4.5"}
    assert set(failed.FailedSOPInstanceUIDList) == wanted


def test_an_identifier_over_the_limit_aborts_the_association(node: Node) -> None:
    huge = b"\x10\x00\x20\x00" + struct.pack("<I", 2 << 20) + b"X" * (2 << 20)
    assert raw_find(node.scp.port, huge) == [ABORTED]


def test_a_move_to_a_tls_destination(
    monkeypatch: pytest.MonkeyPatch, archive: Path, tls_pacs: StoreSCPPeer, server_pair: SelfSigned
) -> None:
    """The destination's address says TLS: the instances go over DICOM TLS, trusted with
    the node's client files."""
    monkeypatch.setattr(requestor, "_process_tls", requestor._process_tls)
    requestor.use_client_tls(TLSFiles(ca_certificates=server_pair.certificate))
    address = Address(ip="127.0.0.1", port=tls_pacs.port, ae_title="PACS", tls=True)
    secure = Node(FolderProvider(archive, {"PACS": address}))
    try:
        log = movescu(secure, "PACS", "QueryRetrieveLevel=PATIENT", "PatientID=PAT_B")
    finally:
        secure.scp.close()
    assert "Received Final Move Response (Success)" in log, log
    wanted = {dcmread(p).SOPInstanceUID for p in archive.glob("PAT_B-*.dcm")}
    assert {dcmread(p).SOPInstanceUID for p in tls_pacs.files()} == wanted


def test_a_c_get_cancelled_between_sub_operations(node: Node) -> None:
    """pynetdicom cancels after the first pending response: the next sub-operation is
    not started and the final status is 0xFE00."""
    received: list[str] = []

    def store(event: evt.Event) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    role = build_role(CTImageStorage, scp_role=True)
    association = ae.associate(
        "127.0.0.1",
        node.scp.port,
        ae_title="DICOMFLOW",
        ext_neg=[role],
        evt_handlers=[(evt.EVT_C_STORE, store)],
    )
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = "PAT_A"  # two studies, five instances
    statuses = []
    try:
        model = StudyRootQueryRetrieveInformationModelGet
        for status, _ in association.send_c_get(identifier, model, msg_id=9):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                association.send_c_cancel(9, query_model=model)
    finally:
        association.release()
    assert statuses[0] == 0xFF00 and statuses[-1] == 0xFE00, statuses
    assert 1 <= len(received) < 5


# -- Orthanc as the Q/R SCU ---------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc is not installed")
def test_orthanc_queries_and_retrieves_from_the_node(
    node: Node, archive: Path, tmp_path: Path
) -> None:
    orthanc = OrthancPeer(
        tmp_path / "orthanc", modalities={"node": f"DICOMFLOW@127.0.0.1:{node.scp.port}"}
    )
    node.provider.destinations["ORTHANC"] = Address("127.0.0.1", orthanc.dicom_port, "ORTHANC")
    try:
        query = {"Level": "Study", "Query": {"PatientID": "PAT_A", "StudyDate": ""}}
        found = orthanc.rest("POST", "/modalities/node/query", json.dumps(query))
        answers = orthanc.rest("GET", f"/queries/{found['ID']}/answers?expand&simplify")
        assert sorted(a["StudyDate"] for a in answers) == ["20240110", "20240320"]
        orthanc.rest("POST", f"/queries/{found['ID']}/retrieve", "ORTHANC")
        instances = orthanc.rest("GET", "/instances?expand")
    finally:
        del node.provider.destinations["ORTHANC"]
        orthanc.stop()
    wanted = {dcmread(p).SOPInstanceUID for p in archive.glob("PAT_A-*.dcm")}
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in instances} == wanted


def test_findscu_over_dicom_tls(server_pair: SelfSigned, client_pair: SelfSigned) -> None:
    """Over TLS a cancel is looked for in the TLS layer's buffer as well as the socket's."""
    context = tls.server_context(
        TLSFiles(server_pair.certificate, server_pair.private_key, client_pair.certificate)
    )
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW",
        ip="127.0.0.1",
        port=0,
        on_store=lambda _: 0,
        tls=context,
        query_retrieve=Endless(),  # type: ignore[arg-type]
    )
    options = dcmtk_tls_options(
        client_pair.certificate, client_pair.private_key, server_pair.certificate
    )
    command = ["findscu", "-v", "-aec", "DICOMFLOW", "-S", *options, "--cancel", "1"]
    command += ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
    command += ["127.0.0.1", str(scp.port)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    finally:
        scp.close()
    log = done.stdout + done.stderr
    assert "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in log, log


class Broken(Endless):
    """A provider that fails: a bad key at once, anything else after three matches (the
    last two held by the acceptor to go out with the next response: the failure's)."""

    def find(self, request: object) -> Iterator[Dataset]:
        identifier = request.identifier  # type: ignore[attr-defined]
        if identifier.PatientID == "BADKEY":
            raise QueryKeyError('Query parameter "PatientID" cannot be matched.')
        for number in range(3):
            found = Dataset()
            found.StudyInstanceUID = f"1.2.{number}"
            yield found
        raise RuntimeError("the catalog's disk is on fire")


@pytest.mark.parametrize(
    ("patient", "statuses"), [("BADKEY", [0xA900]), ("", [0xFF00, 0xFF00, 0xFF00, 0xC000])]
)
def test_provider_errors_become_statuses(
    caplog: pytest.LogCaptureFixture, patient: str, statuses: list[int]
) -> None:
    scp = LeanStoreSCP(
        ae_title="DICOMFLOW",
        ip="127.0.0.1",
        port=0,
        on_store=lambda _: 0,
        query_retrieve=Broken(),  # type: ignore[arg-type]
    )
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientID = patient
    identifier.StudyInstanceUID = ""
    try:
        with caplog.at_level(logging.WARNING, logger="dicomflow.net.qr_scp"):
            found = _find(scp.port, identifier, StudyRootQueryRetrieveInformationModelFind)
    finally:
        scp.close()
    assert found == statuses
    assert any("C-FIND from HOSTILE at 127.0.0.1" in r.getMessage() for r in caplog.records)
