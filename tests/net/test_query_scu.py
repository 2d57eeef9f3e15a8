"""The Q/R SCU (``find``, ``move_report``, ``get`` of :mod:`dicomflow.net.requestor`)
against Orthanc as the PACS, and against a hostile peer (pynetdicom, in-process) whose
answers are huge, endless or name files outside the destination."""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import PeerUnreachableError, QueryKeyError, QueryRetrieveStatusError
from dicomflow.net.query_retrieve import InformationModel, Operation
from dicomflow.net.requestor import (
    CANCEL_DRAIN_S,
    check_report,
    find,
    get,
    move_report,
    sop_class_of,
)
from dicomflow.net.retrieve import query_identifier
from dicomflow.net.sub_operations import MAX_KEPT_STATUSES, RetrieveReport
from dicomflow.net.user_identity import UserIdentity
from dicomflow.tls import TLSFiles, make_self_signed
from support import OrthancPeer, OrthancTLS, StoreSCPPeer, free_port, sop_uids

SCU = "QRSCU"


@dataclass(frozen=True)
class Archive:
    """Orthanc holding three studies of two patients, and a storescp it moves to."""

    pacs: OrthancPeer
    destination: StoreSCPPeer
    studies: dict[str, list[Path]]  # StudyInstanceUID -> files

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.pacs.dicom_port, self.pacs.ae_title)


STUDIES = [  # patient id, patient name, study date, instances
    ("QR-A", "SMITH^JOHN", "20230105", 3),
    ("QR-A", "SMITH^JOHN", "20240210", 2),
    ("QR-B", "SMYTHE^ANN", "20240301", 2),
]


def write_study(folder: Path, patient_id: str, name: str, date: str, count: int) -> list[Path]:
    series = make_ct_series(count, rows=8, columns=8, patient_id=patient_id, patient_name=name)
    for dataset in series:
        dataset.StudyDate = date
    return write_series(series, folder)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp("qr-scu")
    destination = StoreSCPPeer(root / "storescp", ae_title="STORESCP")
    pacs = OrthancPeer(
        root / "orthanc",
        modalities={"scu": f"{SCU}@127.0.0.1:{free_port()}", "store": destination.endpoint()},
    )
    studies = {}
    for index, (patient_id, name, date, count) in enumerate(STUDIES):
        files = write_study(root / f"study-{index}", patient_id, name, date, count)
        for path in files:
            pacs.rest("POST", "/instances", path.read_bytes())
        studies[str(pydicom.dcmread(files[0]).StudyInstanceUID)] = files
    yield Archive(pacs, destination, studies)
    pacs.stop()
    destination.stop()


def study_uids(matches: Iterator[Dataset]) -> set[str]:
    return {str(match.StudyInstanceUID) for match in matches}


def uid_of(archive: Archive, index: int) -> str:
    return list(archive.studies)[index]


def test_find_matches_wildcards_and_date_ranges(archive: Archive) -> None:
    by_name = query_identifier("STUDY", ["PatientName=SMI*"])
    assert study_uids(find(archive.address, by_name, calling_ae_title=SCU)) == {
        uid_of(archive, 0),
        uid_of(archive, 1),
    }
    by_date = query_identifier("STUDY", ["StudyDate=20240101-"])
    assert study_uids(find(archive.address, by_date, calling_ae_title=SCU)) == {
        uid_of(archive, 1),
        uid_of(archive, 2),
    }


def test_find_returns_the_return_keys_asked_for(archive: Archive) -> None:
    identifier = query_identifier("STUDY", ["PatientID=QR-B"])
    (match,) = find(archive.address, identifier, calling_ae_title=SCU)
    assert (match.PatientName, match.StudyDate) == ("SMYTHE^ANN", "20240301")
    assert "StudyDescription" in match  # asked for by default (empty in Orthanc)


def test_find_in_the_patient_root_model(archive: Archive) -> None:
    identifier = query_identifier("PATIENT", ["PatientID=QR-*"])
    matches = find(archive.address, identifier, InformationModel.PATIENT_ROOT, SCU)
    assert sorted(str(match.PatientID) for match in matches) == ["QR-A", "QR-B"]


def test_find_stops_at_its_limit_and_the_peer_stays_usable(archive: Archive) -> None:
    identifier = query_identifier("STUDY", ["PatientID="])
    assert len(list(find(archive.address, identifier, calling_ae_title=SCU, limit=1))) == 1
    assert len(list(find(archive.address, identifier, calling_ae_title=SCU))) == 3


def test_find_of_an_unreachable_peer_names_it() -> None:
    address = Address("127.0.0.1", free_port(), "NOBODY")
    with pytest.raises(PeerUnreachableError, match="unreachable"):
        list(find(address, query_identifier("STUDY", [])))


def test_move_reports_counts_and_delivers(archive: Archive) -> None:
    uid = uid_of(archive, 0)
    identifier = query_identifier("STUDY", [f"StudyInstanceUID={uid}"], return_keys=False)
    seen: list[int] = []
    report = move_report(
        archive.address,
        identifier,
        "STORESCP",
        sop_class_of(InformationModel.STUDY_ROOT, Operation.MOVE),
        SCU,
        on_progress=lambda progress: seen.append(progress.completed),
    )
    assert report.ok and (report.completed, report.failed) == (3, 0)
    assert seen  # progress was shown
    assert sop_uids(archive.destination.files()) >= sop_uids(archive.studies[uid])


def test_move_to_an_unknown_destination_names_the_status(archive: Archive) -> None:
    identifier = query_identifier("STUDY", [f"StudyInstanceUID={uid_of(archive, 1)}"])
    sop_class = sop_class_of(InformationModel.STUDY_ROOT, Operation.MOVE)
    report = move_report(archive.address, identifier, "NOWHERE", sop_class, SCU)
    assert not report.ok
    with pytest.raises(QueryRetrieveStatusError, match=r"status 0xC000 \(Failed: Unable to pro"):
        check_report(report, "C-MOVE", archive.address)


def test_get_writes_each_instance_into_the_folder(archive: Archive, tmp_path: Path) -> None:
    uid = uid_of(archive, 2)
    identifier = query_identifier("STUDY", [f"StudyInstanceUID={uid}"], return_keys=False)
    out = tmp_path / "got"
    report = get(archive.address, identifier, InformationModel.STUDY_ROOT, str(out), SCU)
    assert report.ok and (report.stored, report.completed, report.refused) == (2, 2, 0)
    files = sorted(out.iterdir())
    assert [path.name for path in files] == sorted(f"{u}.dcm" for u in sop_uids(files))
    assert sop_uids(files) == sop_uids(archive.studies[uid])
    original = pydicom.dcmread(archive.studies[uid][0])
    got = pydicom.dcmread(out / f"{original.SOPInstanceUID}.dcm")
    assert (got.pixel_array == original.pixel_array).all()


def test_get_hands_part10_bytes_to_a_callback(archive: Archive) -> None:
    identifier = query_identifier("PATIENT", ["PatientID=QR-B"], return_keys=False)
    received: list[Dataset] = []

    def keep(data: bytes) -> int:
        from io import BytesIO

        received.append(pydicom.dcmread(BytesIO(data)))
        return 0x0000

    report = get(archive.address, identifier, InformationModel.PATIENT_ROOT, keep, SCU)
    assert report.stored == 2
    assert {str(ds.SOPInstanceUID) for ds in received} == sop_uids(
        archive.studies[uid_of(archive, 2)]
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("NoSuchKeyword=1", '"NoSuchKeyword" is neither a DICOM keyword'),
        ("PatientName=" + "x" * 10_000, "10000 characters long"),
        ("PatientID=a\x00b", "control characters"),
        ("ReferencedSeriesSequence=", "is a sequence"),
    ],
)
def test_bad_keys_are_refused_naming_them(key: str, message: str) -> None:
    with pytest.raises(QueryKeyError, match=message):
        query_identifier("STUDY", [key])


def test_unknown_levels_are_refused() -> None:
    with pytest.raises(QueryKeyError, match='"FRAME" is not one of'):
        query_identifier("FRAME", [])


# -- a hostile peer -------------------------------------------------------------------------


@dataclass
class Hostile:
    address: Address
    cancelled: list[bool]
    users: list[tuple[bytes, bytes]]


def hostile_find(event: Any, cancelled: list[bool]) -> Iterator[tuple[int, Dataset | None]]:
    """A million matches with 10 kB values; or one 2 MiB identifier for PatientID=BIG."""
    if str(event.identifier.get("PatientID", "")) == "BIG":
        big = Dataset()
        big.PatientID = "BIG"
        big.StudyDescription = "x" * (2 << 20)
        yield 0xFF00, big
        return
    for index in range(1_000_000):
        if event.is_cancelled:
            cancelled.append(True)
            yield 0xFE00, None
            return
        match = Dataset()
        match.PatientID = f"P{index}"
        match.StudyDescription = "y" * 10_000
        yield 0xFF00, match


def hostile_get(event: Any) -> Iterator[Any]:
    """Two instances: one whose SOP Instance UID is a path, one that is fine."""
    yield 2
    for uid in ("../../escaped", generate_uid()):
        dataset = make_ct_series(1, rows=4, columns=4)[0]
        dataset.SOPInstanceUID = uid
        dataset.file_meta.MediaStorageSOPInstanceUID = uid
        yield 0xFF00, dataset


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    cancelled: list[bool] = []
    users: list[tuple[bytes, bytes]] = []

    def identify(event: Any) -> tuple[bool, None]:
        users.append((event.primary_field, event.secondary_field))
        return True, None

    ae = AE(ae_title="HOSTILE")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(CTImageStorage, ExplicitVRLittleEndian, scu_role=True, scp_role=True)
    port = free_port()
    handlers = [
        (evt.EVT_C_FIND, hostile_find, [cancelled]),
        (evt.EVT_C_GET, hostile_get),
        (evt.EVT_USER_ID, identify),
    ]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    yield Hostile(Address("127.0.0.1", port, "HOSTILE"), cancelled, users)
    server.shutdown()


def test_endless_matches_with_10_kb_values_stay_bounded(hostile: Hostile, caplog) -> None:
    started = time.monotonic()
    matches = find(hostile.address, query_identifier("STUDY", []), limit=50)
    seen = [len(match.StudyDescription) for match in matches]
    assert seen == [10_000] * 50
    # The peer got a C-CANCEL and ended the query, or (pynetdicom sometimes misses a
    # cancel) went on answering and was aborted after CANCEL_DRAIN_S: either way, bounded.
    assert time.monotonic() - started < CANCEL_DRAIN_S + 40  # a loaded machine: not hung
    ignored = any("of its C-CANCEL; association aborted" in r.getMessage() for r in caplog.records)
    assert hostile.cancelled or ignored


def test_find_presents_the_user_identity(hostile: Hostile) -> None:
    identity = UserIdentity.of("alice", "secret")
    matches = find(hostile.address, query_identifier("STUDY", []), identity=identity, limit=1)
    assert len(list(matches)) == 1
    assert hostile.users[-1] == (b"alice", b"secret")


def test_an_identifier_over_the_limit_is_a_protocol_error(hostile: Hostile) -> None:
    with pytest.raises(PeerUnreachableError, match="longer than 1048576 bytes"):
        list(find(hostile.address, query_identifier("STUDY", ["PatientID=BIG"])))


def test_get_never_writes_outside_its_folder(hostile: Hostile, tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    report = get(
        hostile.address,
        query_identifier("STUDY", ["PatientID=X"]),
        InformationModel.STUDY_ROOT,
        out,
        sop_classes=[CTImageStorage],
    )
    assert (report.stored, report.refused) == (1, 1)
    assert [path.suffix for path in out.iterdir()] == [".dcm"]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [next(out.iterdir()).name]


# -- over DICOM TLS ------------------------------------------------------------------------


def test_find_and_get_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    """Orthanc speaking only DICOM TLS and requiring a trusted client certificate."""
    orthanc_pair = make_self_signed(tmp_path / "tls-orthanc", common_name="ORTHANC")
    our_pair = make_self_signed(tmp_path / "tls-scu", common_name="QRSCU")
    tls = OrthancTLS(orthanc_pair.certificate, orthanc_pair.private_key, (our_pair.certificate,))
    pacs = OrthancPeer(
        tmp_path / "orthanc", modalities={"scu": f"{SCU}@127.0.0.1:{free_port()}"}, tls=tls
    )
    try:
        files = write_study(tmp_path / "study", "QR-TLS", "TLS^PATIENT", "20240101", 2)
        for path in files:
            pacs.rest("POST", "/instances", path.read_bytes())
        address = Address("127.0.0.1", pacs.dicom_port, pacs.ae_title, tls=True)
        ours = TLSFiles(our_pair.certificate, our_pair.private_key, orthanc_pair.certificate)
        identifier = query_identifier("STUDY", ["PatientID=QR-TLS"])
        (match,) = find(address, identifier, calling_ae_title=SCU, tls=ours)
        assert match.PatientName == "TLS^PATIENT"
        report = get(address, identifier, InformationModel.STUDY_ROOT, tmp_path / "got", SCU, ours)
        assert report.stored == 2 and sop_uids(list((tmp_path / "got").iterdir())) == sop_uids(
            files
        )
        with pytest.raises(PeerUnreachableError):
            list(find(address, identifier, calling_ae_title=SCU))  # its certificate untrusted
    finally:
        pacs.stop()


def test_a_report_keeps_a_bounded_number_of_statuses() -> None:
    report = RetrieveReport()
    for _ in range(100_000):
        report.update(0xFF00, (65535, 1, 0, 0))
    report.update(0x0000, (0, 2, 0, 0))
    assert len(report.statuses) == MAX_KEPT_STATUSES and report.statuses[-1] == 0x0000
    assert report.ok and report.completed == 2
