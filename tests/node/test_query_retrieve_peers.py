"""A node with an archive answers Query/Retrieve from real peers: dcmtk's findscu, getscu
and movescu (to a storescp named by ``move_destinations``), and Orthanc querying the node
as a DICOM modality and retrieving from it. Both receivers; one node per receiver."""

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from dicomflow.cod.catalog import Level
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.matching import Query
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.settings import build_settings
from dicomflow.tls import SelfSigned, make_self_signed
from support import (
    OrthancPeer,
    StoreSCPPeer,
    dcmtk_tls_options,
    free_port,
    sop_uids,
    storescu,
    wait_for,
)

NODE = "DICOMFLOW"


@dataclass
class Archive:
    """A running node whose archive holds ``studies`` (by PatientID), and the storescp
    C-MOVE sends to (AE title MOVED)."""

    node: Node
    studies: dict[str, list[Dataset]]
    moved: StoreSCPPeer
    orthanc: OrthancPeer


def make_studies() -> dict[str, list[Dataset]]:
    doe = make_ct_series(3, patient_id="A1", patient_name="DOE^JOHN", seed=1)
    muller = make_ct_series(2, patient_id="B2", patient_name="Müller^Jörg", seed=2)
    for dataset in doe:
        dataset.StudyDate = "20240115"
    for dataset in muller:
        dataset.StudyDate = "20230301"
        dataset.SpecificCharacterSet = "ISO_IR 192"
    return {"A1": doe, "B2": muller}


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancPeer]:
    peer = OrthancPeer(tmp_path_factory.mktemp("orthanc"))
    yield peer
    peer.stop()


@pytest.fixture(scope="module", params=["lean", "pynetdicom"])
def archive(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    orthanc: OrthancPeer,
) -> Iterator[Archive]:
    root = tmp_path_factory.mktemp(f"qr-{request.param}")
    moved = StoreSCPPeer(root / "moved", ae_title="MOVED")
    datastore = root / "archive"
    settings = build_settings(
        port=free_port(),
        data_directory=root / "data",
        archive_datastore=str(datastore),
        series_quiet_period_s=0.3,
        queue_workers=1,
        receiver=request.param,
        move_destinations=[moved.endpoint(), orthanc.endpoint()],
    )
    scheduler = ArchiveScheduler(
        str(datastore), settings.resolved_queue_url(), settings.catalog_location()
    )
    node = Node(None, settings, Consumers(scheduler))
    node.start()
    try:
        studies = make_studies()
        files = [
            path for uid, series in studies.items() for path in write_series(series, root / uid)
        ]
        storescu(node.port, files)
        assert node.catalog is not None
        catalog = node.catalog
        located = partial(catalog.locate, Level.STUDY, Query())
        wait_for(lambda: len(located()) == 5, 120, "the archive jobs to catalogue 5 instances")
        orthanc.rest(
            "PUT",
            "/modalities/NODE",
            f'{{"AET": "{NODE}", "Host": "127.0.0.1", "Port": {node.port}}}',
        )
        yield Archive(node, studies, moved, orthanc)
    finally:
        node.stop()
        moved.stop()


def dcmtk(tool: str, port: int, *options: str, keys: dict[str, str]) -> str:
    """Run a dcmtk Q/R tool against the node on ``port``; its output (stdout and stderr)."""
    command = [tool, *options, "-aec", NODE, "127.0.0.1", str(port)]
    for name, value in keys.items():
        command += ["-k", f"{name}={value}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def find(archive: Archive, folder: Path, model: str, **keys: str) -> list[Dataset]:
    """findscu's responses (``-X``: each written to a file), read back."""
    folder.mkdir()
    output = dcmtk("findscu", archive.node.port, model, "-X", "-od", str(folder), keys=keys)
    assert "error status" not in output, output
    return [dcmread(path) for path in sorted(folder.glob("rsp*.dcm"))]


def study_uid(archive: Archive, patient_id: str) -> str:
    return str(archive.studies[patient_id][0].StudyInstanceUID)


def test_findscu_study_root_studies_by_patient_name_wildcard(
    archive: Archive, tmp_path: Path
) -> None:
    keys = {
        "QueryRetrieveLevel": "STUDY",
        "PatientName": "doe*",
        "StudyInstanceUID": "",
        "NumberOfStudyRelatedInstances": "",
    }
    found = find(archive, tmp_path / "doe", "-S", **keys)
    assert [str(d.StudyInstanceUID) for d in found] == [study_uid(archive, "A1")]
    assert found[0].NumberOfStudyRelatedInstances == 3
    assert str(found[0].PatientName) == "DOE^JOHN"


def test_findscu_study_date_range(archive: Archive, tmp_path: Path) -> None:
    keys = {"QueryRetrieveLevel": "STUDY", "StudyDate": "20230101-20231231", "PatientID": ""}
    found = find(archive, tmp_path / "range", "-S", **keys, PatientName="")
    assert [str(d.PatientID) for d in found] == ["B2"]
    assert found[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(found[0].PatientName) == "Müller^Jörg"


def test_findscu_patient_root_every_level(archive: Archive, tmp_path: Path) -> None:
    patients = find(
        archive, tmp_path / "p", "-P", QueryRetrieveLevel="PATIENT", PatientID="", PatientName=""
    )
    assert sorted(str(d.PatientID) for d in patients) == ["A1", "B2"]
    assert "Müller^Jörg" in {str(d.PatientName) for d in patients}
    studies = find(
        archive,
        tmp_path / "s",
        "-P",
        QueryRetrieveLevel="STUDY",
        PatientID="A1",
        StudyInstanceUID="",
    )
    assert [str(d.StudyInstanceUID) for d in studies] == [study_uid(archive, "A1")]
    doe = archive.studies["A1"]
    series = find(
        archive,
        tmp_path / "se",
        "-P",
        QueryRetrieveLevel="SERIES",
        PatientID="A1",
        StudyInstanceUID=study_uid(archive, "A1"),
        SeriesInstanceUID="",
        Modality="",
    )
    assert [str(d.SeriesInstanceUID) for d in series] == [str(doe[0].SeriesInstanceUID)]
    assert series[0].Modality == "CT"
    images = find(
        archive,
        tmp_path / "im",
        "-P",
        QueryRetrieveLevel="IMAGE",
        PatientID="A1",
        StudyInstanceUID=study_uid(archive, "A1"),
        SeriesInstanceUID=str(doe[0].SeriesInstanceUID),
        SOPInstanceUID="",
    )
    assert sorted(str(d.SOPInstanceUID) for d in images) == sorted(
        str(d.SOPInstanceUID) for d in doe
    )


def test_findscu_series_and_image_levels_study_root(archive: Archive, tmp_path: Path) -> None:
    muller = archive.studies["B2"]
    images = find(
        archive,
        tmp_path / "im",
        "-S",
        QueryRetrieveLevel="IMAGE",
        StudyInstanceUID=study_uid(archive, "B2"),
        SeriesInstanceUID=str(muller[0].SeriesInstanceUID),
        SOPInstanceUID="",
        InstanceNumber="",
    )
    assert sorted(int(d.InstanceNumber) for d in images) == [1, 2]


def final_status(output: str) -> int:
    """The status of the last response dcmtk's ``-d`` output shows."""
    found = re.findall(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", output)
    assert found, output[-3000:]
    return int(found[-1], 16)


@pytest.mark.parametrize(
    ("options", "keys", "status"),
    [
        (("-S",), {"QueryRetrieveLevel": "PATIENT"}, 0xC000),
        (("-P",), {"QueryRetrieveLevel": "../x"}, 0xC000),
        (("-P",), {"PatientID": "A1"}, 0xC000),
        (("-S",), {"QueryRetrieveLevel": "STUDY", "PatientID": "A" * 2000}, 0xA900),
    ],
)
def test_findscu_bad_identifiers_get_failure_statuses(
    archive: Archive, options: tuple[str, ...], keys: dict[str, str], status: int
) -> None:
    assert final_status(dcmtk("findscu", archive.node.port, *options, "-d", keys=keys)) == status
    assert archive.node.scp is not None  # still serving
    assert find_count(archive) == 2


def find_count(archive: Archive) -> int:
    output = dcmtk(
        "findscu",
        archive.node.port,
        "-S",
        "-v",
        keys={"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""},
    )
    return output.count("(Pending)")


def test_getscu_brings_the_study_back_byte_for_byte(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "got"
    folder.mkdir()
    keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid(archive, "A1")}
    output = dcmtk("getscu", archive.node.port, "-S", "-od", str(folder), keys=keys)
    got = {str(d.SOPInstanceUID): d for d in (dcmread(p) for p in folder.iterdir())}
    sent = {str(d.SOPInstanceUID): d for d in archive.studies["A1"]}
    assert set(got) == set(sent), output
    assert all(got[uid].PixelData == sent[uid].PixelData for uid in sent)


def test_movescu_sends_to_a_move_destination(archive: Archive) -> None:
    before = set(archive.moved.files())
    keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid(archive, "B2")}
    output = dcmtk("movescu", archive.node.port, "-S", "-aem", "MOVED", keys=keys)
    assert "error status" not in output, output
    wait_for(lambda: len(set(archive.moved.files()) - before) >= 2, 30, "2 moved instances")
    assert sop_uids(archive.moved.files()) >= {str(d.SOPInstanceUID) for d in archive.studies["B2"]}


@pytest.mark.parametrize("destination", ["NOWHERE", "moved", "../x"])
def test_movescu_to_an_unknown_destination_is_refused(archive: Archive, destination: str) -> None:
    keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study_uid(archive, "B2")}
    output = dcmtk("movescu", archive.node.port, "-S", "-d", "-aem", destination, keys=keys)
    assert final_status(output) == 0xA801


def test_a_retrieval_without_its_unique_key_is_refused(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "none"
    folder.mkdir()
    keys = {"QueryRetrieveLevel": "STUDY"}
    output = dcmtk("getscu", archive.node.port, "-S", "-d", "-od", str(folder), keys=keys)
    assert final_status(output) == 0xA900
    assert not any(folder.iterdir())


def test_orthanc_queries_the_node_and_retrieves_a_study(archive: Archive) -> None:
    orthanc = archive.orthanc
    for study in orthanc.rest("GET", "/studies"):  # what the other receiver's node sent
        orthanc.rest("DELETE", f"/studies/{study}")
    body = '{"Level": "Study", "Query": {"PatientID": "A*", "StudyInstanceUID": ""}}'
    query = orthanc.rest("POST", "/modalities/NODE/query", body)
    answers = orthanc.rest("GET", f"/queries/{query['ID']}/answers?expand&simplify")
    assert [a["StudyInstanceUID"] for a in answers] == [study_uid(archive, "A1")]
    orthanc.rest(
        "POST",
        f"/queries/{query['ID']}/answers/0/retrieve",
        '{"TargetAet": "ORTHANC", "Synchronous": true}',
    )
    studies = orthanc.rest("GET", "/studies?expand")
    held = {s["MainDicomTags"]["StudyInstanceUID"]: s for s in studies}
    assert study_uid(archive, "A1") in held
    instances = orthanc.rest("GET", f"/studies/{held[study_uid(archive, 'A1')]['ID']}/instances")
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in instances) == sorted(
        str(d.SOPInstanceUID) for d in archive.studies["A1"]
    )


@pytest.mark.parametrize("receiver", ["lean", "pynetdicom"])
def test_query_over_tls_and_move_to_a_tls_destination(
    tmp_path: Path, receiver: str, server_pair: SelfSigned, client_pair: SelfSigned
) -> None:
    """The TLS port answers C-FIND too; a ``?tls`` move destination is sent to over TLS,
    the node presenting its certificate and trusting the destination's by its CA file."""
    node_pair = make_self_signed(tmp_path / "node", common_name="node")
    trusted = tmp_path / "trusted.pem"
    trusted.write_text(server_pair.certificate.read_text() + client_pair.certificate.read_text())
    pacs = StoreSCPPeer(tmp_path / "pacs", ae_title="TLSPACS", tls=server_pair)
    datastore = tmp_path / "archive"
    settings = build_settings(
        port=0,
        tls_port=free_port(),
        tls_certificate=node_pair.certificate,
        tls_private_key=node_pair.private_key,
        tls_ca_certificates=trusted,
        data_directory=tmp_path / "data",
        archive_datastore=str(datastore),
        series_quiet_period_s=0.3,
        queue_workers=1,
        receiver=receiver,
        move_destinations=[pacs.endpoint()],
    )
    scheduler = ArchiveScheduler(
        str(datastore), settings.resolved_queue_url(), settings.catalog_location()
    )
    node = Node(None, settings, Consumers(scheduler))
    node.start()
    try:
        series = make_ct_series(2, patient_id="T1")
        storescu(node.port, write_series(series, tmp_path / "sent"))
        assert node.catalog is not None and node.tls_port is not None
        located = partial(node.catalog.locate, Level.STUDY, Query())
        wait_for(lambda: len(located()) == 2, 120, "the archive jobs to catalogue 2 instances")
        study = str(series[0].StudyInstanceUID)
        tls_options = dcmtk_tls_options(client_pair.certificate, client_pair.private_key)
        options = [*tls_options, "+cf", str(node_pair.certificate), "-v"]
        keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}
        assert study in dcmtk("findscu", node.tls_port, "-S", *options, keys=keys)
        keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}
        moved = dcmtk("movescu", node.port, "-S", "-d", "-aem", "TLSPACS", keys=keys)
        assert final_status(moved) == 0x0000
        assert sop_uids(pacs.files()) == {str(d.SOPInstanceUID) for d in series}
    finally:
        node.stop()
        pacs.stop()
