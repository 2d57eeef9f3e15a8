"""``dicomflow find``, ``move`` and ``get`` run as a user runs them (subprocesses) against
Orthanc as the PACS, and their one-line errors."""

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dicomflow.dicom.factory import make_ct_series, write_series
from support import OrthancPeer, StoreSCPPeer, free_port, sop_uids

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")
SCU = "CLISCU"


@dataclass(frozen=True)
class Pacs:
    orthanc: OrthancPeer
    destination: StoreSCPPeer
    files: dict[str, list[Path]]  # PatientID -> files of its one study

    def endpoint(self) -> str:
        return self.orthanc.endpoint()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    root = tmp_path_factory.mktemp("qr-cli")
    destination = StoreSCPPeer(root / "storescp", ae_title="STORESCP")
    orthanc = OrthancPeer(
        root / "orthanc",
        modalities={"scu": f"{SCU}@127.0.0.1:{free_port()}", "store": destination.endpoint()},
    )
    files = {}
    for patient_id, name, date in [
        ("CLI-1", "DOE^JANE", "20240105"),
        ("CLI-2", "ROE^RICH", "20220101"),
    ]:
        series = make_ct_series(2, rows=8, columns=8, patient_id=patient_id, patient_name=name)
        for dataset in series:
            dataset.StudyDate = date
        files[patient_id] = write_series(series, root / patient_id)
        for path in files[patient_id]:
            orthanc.rest("POST", "/instances", path.read_bytes())
    yield Pacs(orthanc, destination, files)
    orthanc.stop()
    destination.stop()


def dicomflow(*arguments: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [DICOMFLOW, *(str(a) for a in arguments)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert text in lines[0], lines[0]


def test_find_shows_a_table_of_matches(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow(
        "find", pacs.endpoint(), "--calling-ae", SCU, "-k", "PatientName=DOE*", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "DOE^JANE" in result.stdout and "ROE^RICH" not in result.stdout
    assert "20240105" in result.stdout
    assert "1 match(es)" in result.stderr


def test_find_json_lines_with_a_date_range(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow(
        "find",
        pacs.endpoint(),
        "--calling-ae",
        SCU,
        "--json",
        "-k",
        "StudyDate=-20230101",
        "-k",
        "PatientID=",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["00100020"]["Value"] for line in lines] == [["CLI-2"]]


def test_find_stops_at_its_limit_and_says_so(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow(
        "find", pacs.endpoint(), "--calling-ae", SCU, "--json", "--limit", "1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "1 match(es)" in result.stderr and "see --limit" in result.stderr


def test_find_at_patient_level_in_the_patient_root_model(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow(
        "find", pacs.endpoint(), "--calling-ae", SCU, "--model", "patient", "--level", "patient",
        "--json", "-k", "PatientID=CLI-*", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ids = sorted(json.loads(line)["00100020"]["Value"][0] for line in result.stdout.splitlines())
    assert ids == ["CLI-1", "CLI-2"]


def test_move_sends_to_the_destination_with_counts(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow(
        "move", pacs.endpoint(), "--calling-ae", SCU, "--destination", "STORESCP",
        "-k", "PatientID=CLI-1", "--level", "PATIENT", "--model", "patient", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "moved 2 instance(s) to STORESCP (0 failed, 0 warning)" in result.stdout
    assert sop_uids(pacs.destination.files()) >= sop_uids(pacs.files["CLI-1"])


def test_get_writes_files_named_by_uid(pacs: Pacs, tmp_path: Path) -> None:
    out = tmp_path / "out"
    study = str(pydicom.dcmread(pacs.files["CLI-2"][0]).StudyInstanceUID)
    result = dicomflow(
        "get", pacs.endpoint(), "--calling-ae", SCU, "--out", out,
        "-k", f"StudyInstanceUID={study}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"retrieved 2 instance(s) into {out}" in result.stdout
    files = sorted(out.iterdir())
    assert sop_uids(files) == sop_uids(pacs.files["CLI-2"])
    assert all(path.name == f"{pydicom.dcmread(path).SOPInstanceUID}.dcm" for path in files)


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("Nonsense=1", '"Nonsense" is neither a DICOM keyword nor a tag'),
        ("PatientName=" + "A" * 10_000, "10000 characters long"),
    ],
)
def test_a_bad_key_is_one_error_line(pacs: Pacs, tmp_path: Path, key: str, text: str) -> None:
    one_line_error(dicomflow("find", pacs.endpoint(), "-k", key, cwd=tmp_path), 2, text)


def test_an_unknown_level_is_one_error_line(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow("find", pacs.endpoint(), "--level", "FRAME", cwd=tmp_path)
    one_line_error(result, 2, '"FRAME" is not one of PATIENT, STUDY, SERIES, IMAGE')


def test_an_unreachable_peer_is_one_error_line(tmp_path: Path) -> None:
    result = dicomflow("find", f"PACS@127.0.0.1:{free_port()}", cwd=tmp_path)
    one_line_error(result, 1, "the peer is unreachable (Connection refused)")


def test_a_failure_status_is_one_error_line(pacs: Pacs, tmp_path: Path) -> None:
    result = dicomflow(
        "move", pacs.endpoint(), "--calling-ae", SCU, "--destination", "NOWHERE",
        "-k", "PatientID=CLI-1", cwd=tmp_path,
    )  # fmt: skip
    one_line_error(result, 1, "0xC000 (Failed: Unable to process)")


def test_a_bad_endpoint_is_one_error_line(tmp_path: Path) -> None:
    one_line_error(dicomflow("get", "nonsense", "--out", tmp_path, cwd=tmp_path), 2, "nonsense")
