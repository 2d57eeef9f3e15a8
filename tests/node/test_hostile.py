"""Hostile values and malformed data: nothing escapes the data root, nothing breaks the node."""

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import Verification
from sample_pipelines import RELEASE, CopyPipeline, HoldingPipeline

from dicomflow.dicom.factory import make_ct_series, make_dataset, write_series
from dicomflow.engine.node import Node
from dicomflow.net.storage import CANNOT_UNDERSTAND, DATASET_MISMATCH
from support import storescu, wait_for

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid values

PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
PATIENT_ID_TAG = b"\x10\x00\x20\x00LO"

HOSTILE_PATIENT_IDS = [
    pytest.param("", id="empty"),
    pytest.param(None, id="missing"),
    pytest.param("../x", id="dot-dot"),
    pytest.param("/etc", id="absolute"),
    pytest.param("..\\..\\x", id="backslashes"),
    pytest.param("x" * 65536, id="64kB"),
    pytest.param("a\x00b\x00", id="NUL"),
]
HOSTILE_UIDS = [
    pytest.param("../../x", id="dot-dot"),
    pytest.param("/abs", id="absolute"),
    pytest.param("", id="empty"),
    pytest.param("1." + "2" * 63, id="65-chars"),
]


@pytest.fixture
def send_files_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom sends a file's dataset bytes as they are, without decoding them."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def c_store(port: int, paths: list[Path]) -> list[int | None]:
    """Send ``paths`` with pynetdicom over one association; return the statuses."""
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMFLOW")
    assert assoc.is_established
    try:
        return [getattr(assoc.send_c_store(path), "Status", None) for path in paths]
    finally:
        assoc.release()


def c_echo(port: int) -> int | None:
    ae = AE(ae_title="HOSTILE")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMFLOW")
    assert assoc.is_established
    try:
        return getattr(assoc.send_c_echo(), "Status", None)
    finally:
        assoc.release()


def is_failure(status: int | None) -> bool:
    return status is not None and (status & 0xF000 == 0xC000 or status & 0xFF00 == 0xA700)


def tree(root: Path, skip: Path | None = None) -> set[Path]:
    """Below ``root``, but for ``skip`` and the test pipelines' records."""
    records = root / "records"
    return {
        path
        for path in root.rglob("*")
        if (skip is None or not path.is_relative_to(skip)) and not path.is_relative_to(records)
    }


def names_under(root: Path) -> Iterator[str]:
    return (path.name for path in root.rglob("*"))


def spooled(node: Node) -> dict[Path, bytes]:
    """The instance files in the node's spool, once written (the journal writes behind)."""
    node.spool.settle()
    return {path: path.read_bytes() for path in node.spool.root.rglob("*.dcm")}


def good_instance(folder: Path) -> Path:
    return write_series([make_dataset(PatientID="GOOD")], folder)[0]


def assert_contained(node: Node, data: Path, patient_id: str | None, outside: set[Path]) -> None:
    """Nothing new outside ``data``; nothing under it is named after ``patient_id``."""
    assert tree(data.parent, skip=data) == outside
    forbidden = {"x", "etc"}
    if patient_id:
        forbidden |= {patient_id, Path(patient_id).name}
    names = set(names_under(data))
    assert not forbidden & names
    assert not any(".." in name for name in names)
    incoming = data / "spool" / "incoming"
    assert all(path.parent.parent == incoming for path in spooled(node))


@pytest.mark.parametrize("patient_id", HOSTILE_PATIENT_IDS)
def test_a_hostile_patient_id_stays_inside_the_data_root_as_its_own_patient(
    make_node, tmp_path: Path, patient_id: str | None
):
    data = tmp_path / "data"
    node = make_node(HoldingPipeline)
    other_series = make_ct_series(3, rows=16, columns=16, patient_id="OTHER")
    storescu(node.port, write_series(other_series, tmp_path / "other"))
    wait_for(lambda: node.counters.received == 3, what="the other patient")
    other = spooled(node)
    hostile = [make_dataset(PatientID=patient_id) for _ in range(2)]
    release = make_dataset(PatientID=patient_id, ImageComments=RELEASE)
    files = write_series(hostile, tmp_path / "hostile")
    release_file = write_series([release], tmp_path / "release")
    outside, siblings = tree(tmp_path, skip=data), set(tmp_path.parent.iterdir())

    result = storescu(node.port, files, check=False)

    if result.returncode == 0:  # stored, held in the spool as a patient of its own
        wait_for(lambda: node.counters.received == 5, what="the hostile instances")
        assert_contained(node, data, patient_id, outside)
        new = {path.parent for path in spooled(node).keys() - other.keys()}
        assert len(new) == 1
        assert new != {path.parent for path in other}
        storescu(node.port, release_file)
        wait_for(lambda: node.counters.rounds_succeeded == 1, what="the hostile patient's round")
        [seen] = (tmp_path / "records" / "rounds-seen").iterdir()
        record = json.loads(seen.read_text())
        assert record["uids"] == sorted(str(ds.SOPInstanceUID) for ds in [*hostile, release])
        assert record["patient_key"] == next(iter(new)).name
    else:  # refused: nothing of it kept
        assert node.counters.refused >= 1
        assert node.counters.received == 3
    assert spooled(node) == other  # the other patient is untouched, still waiting
    assert_contained(node, data, patient_id, outside)
    assert set(tmp_path.parent.iterdir()) == siblings
    for ds in [*hostile, release]:
        assert not Path("/etc", f"{ds.SOPInstanceUID}.dcm").exists()


def test_an_empty_and_a_missing_patient_id_are_two_patients(make_node, tmp_path: Path):
    node = make_node(HoldingPipeline)
    empty = [make_dataset(PatientID=""), make_dataset(PatientID="", ImageComments=RELEASE)]
    missing = [make_dataset(PatientID=None), make_dataset(PatientID=None, ImageComments=RELEASE)]

    storescu(node.port, write_series([*empty, *missing], tmp_path / "series"))

    wait_for(lambda: node.counters.rounds_succeeded == 2, timeout_s=15, what="two rounds")
    records = [
        json.loads(path.read_text()) for path in (tmp_path / "records" / "rounds-seen").iterdir()
    ]
    assert sorted(record["uids"] for record in records) == sorted(
        sorted(str(ds.SOPInstanceUID) for ds in patient) for patient in (empty, missing)
    )
    assert records[0]["patient_key"] != records[1]["patient_key"]


@pytest.mark.parametrize("uid", HOSTILE_UIDS)
def test_a_hostile_sop_instance_uid_is_refused(
    make_node, tmp_path: Path, send_files_raw: None, uid: str
):
    data = tmp_path / "data"
    node = make_node(CopyPipeline)
    dataset = make_dataset(SOPInstanceUID=uid)
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()  # a valid C-STORE UID
    dataset.preamble = b"\0" * 128
    path = tmp_path / "hostile.dcm"
    dataset.save_as(path, enforce_file_format=False)  # True would copy the hostile UID to meta
    assert pydicom.dcmread(path).SOPInstanceUID == uid

    # the command's UID (from the file meta) is not the dataset's: refused at the edge
    assert c_store(node.port, [path]) == [DATASET_MISMATCH]

    assert node.counters.refused == 1
    assert node.counters.received == 0
    assert spooled(node) == {}
    assert not {"x", "abs", uid} & set(names_under(data))
    assert c_echo(node.port) == 0x0000
    assert c_store(node.port, [good_instance(tmp_path / "good")]) == [0x0000]
    assert node.counters.received == 1


def truncate_in_pixel_data(data: bytes) -> bytes:
    return data[:-100]


def truncate_in_element_header(data: bytes) -> bytes:
    return data[: data.index(PIXEL_DATA_TAG) + 3]


def pixel_data_length_past_the_end(data: bytes) -> bytes:
    at = data.index(PIXEL_DATA_TAG) + 8  # tag, VR OW, 2 reserved bytes, then the length
    return data[:at] + struct.pack("<I", 10_000_000) + data[at + 4 :]


def patient_id_length(length: int):  # type: ignore[no-untyped-def]
    def corrupt(data: bytes) -> bytes:
        at = data.index(PATIENT_ID_TAG) + 6  # tag, VR LO, then a 2-byte length
        return data[:at] + struct.pack("<H", length) + data[at + 2 :]

    return corrupt


def patient_id_unknown_vr(data: bytes) -> bytes:
    """PatientID with the VR "QI", which pydicom reads but cannot convert (found by fuzzing:
    it used to get 0xC001 and a traceback)."""
    return data.replace(PATIENT_ID_TAG, PATIENT_ID_TAG[:4] + b"QI", 1)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(patient_id_unknown_vr, id="patient-id-unknown-vr"),
        pytest.param(truncate_in_pixel_data, id="truncated-in-pixel-data"),
        pytest.param(truncate_in_element_header, id="truncated-in-element-header"),
        pytest.param(pixel_data_length_past_the_end, id="pixel-data-length-past-end"),
        pytest.param(patient_id_length(0xFFF0), id="patient-id-length-past-end"),
        pytest.param(patient_id_length(1), id="patient-id-length-too-short"),
    ],
)
def test_a_malformed_dataset_is_refused_and_the_node_keeps_serving(
    make_node, tmp_path: Path, send_files_raw: None, caplog: pytest.LogCaptureFixture, corrupt
):
    node = make_node(CopyPipeline)
    good = good_instance(tmp_path / "good")
    _meta, offset = split_dataset(good)
    raw = good.read_bytes()
    malformed = tmp_path / "malformed.dcm"
    malformed.write_bytes(raw[:offset] + corrupt(raw[offset:]))

    [status] = c_store(node.port, [malformed])

    assert status == CANNOT_UNDERSTAND, f"status {status}"
    assert any(
        record.name == "dicomflow.net.storage" and "cannot be decoded" in record.getMessage()
        for record in caplog.records
    )
    assert node.counters.received == 0
    assert spooled(node) == {}
    assert c_echo(node.port) == 0x0000
    assert c_store(node.port, [good]) == [0x0000]
    assert node.counters.received == 1
    wait_for(lambda: node.counters.rounds_succeeded == 1, what="the good instance's round")
