"""``dicomflow cod``: the real script, run on a local datastore."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from dicomflow.dicom.factory import make_ct_series, write_series

DICOMFLOW = str(Path(sys.executable).with_name("dicomflow"))


def dicomflow(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    return subprocess.run(
        [DICOMFLOW, "cod", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """The report line, on stdout (errors and progress go to stderr)."""
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def series(tmp_path: Path) -> list[list[Path]]:
    return [
        write_series(make_ct_series(4, seed=seed), tmp_path / "in" / f"s{seed}") for seed in (0, 1)
    ]


def uids_of(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def test_ingest_ls_get_verify_reingest_and_corruption(tmp_path: Path, series: list[list[Path]]):
    first = dicomflow("ingest", "in", "--datastore", "ds", "--workers", 2, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "8 new, 0 duplicate(s), 0 conflict(s), 0 error(s)" in summary(first)

    study, series_uid, sop = uids_of(series[0][1])
    studies = dicomflow("ls", "--datastore", "ds", cwd=tmp_path).stdout.split()
    assert set(studies) == {uids_of(files[0])[0] for files in series}
    assert dicomflow("ls", "--datastore", "ds", study, cwd=tmp_path).stdout.split() == [series_uid]
    listing = dicomflow("ls", "--datastore", "ds", study, series_uid, cwd=tmp_path).stdout
    rows = dict(line.split("\t") for line in listing.splitlines())
    assert rows == {uids_of(p)[2]: str(p.stat().st_size) for p in series[0]}

    got = dicomflow("get", sop, "-o", "out.dcm", "--datastore", "ds", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.dcm").read_bytes() == series[0][1].read_bytes()
    assert dicomflow("verify", "--datastore", "ds", cwd=tmp_path).returncode == 0

    tar = tmp_path / "ds" / "studies" / study / "series" / f"{series_uid}.tar"
    before = tar.stat().st_mtime_ns, tar.read_bytes()
    again = dicomflow("ingest", "in", "--datastore", "ds", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 new, 8 duplicate(s), 0 conflict(s), 0 error(s)" in summary(again)
    assert (tar.stat().st_mtime_ns, tar.read_bytes()) == before

    metadata = json.loads((tar.with_suffix("") / "metadata.json").read_text())
    start = metadata["cod"]["instances"][sop]["headers"]["start_byte"]
    data = bytearray(tar.read_bytes())
    data[start + 200] ^= 0xFF
    tar.write_bytes(bytes(data))
    verify = dicomflow("verify", "--datastore", "ds", cwd=tmp_path)
    assert verify.returncode == 1
    errors = error_lines(verify)
    assert len(errors) == 1 and sop in errors[0], verify.stderr


def test_hanging_lock_fails_that_series_only_and_unlock_force_removes_it(
    tmp_path: Path, series: list[list[Path]]
):
    study, series_uid, _ = uids_of(series[0][0])
    lock = tmp_path / "ds" / "studies" / study / "series" / series_uid / ".cod.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("deadbeef")

    blocked = dicomflow("ingest", "in", "--datastore", "ds", cwd=tmp_path)
    assert blocked.returncode == 1
    errors = error_lines(blocked)
    assert len(errors) == 1 and series_uid in errors[0] and "already held" in errors[0]
    assert "4 new, 0 duplicate(s), 0 conflict(s), 1 error(s)" in summary(blocked)

    refused = dicomflow("unlock", study, series_uid, "--datastore", "ds", cwd=tmp_path)
    assert refused.returncode == 2 and len(error_lines(refused)) == 1 and lock.exists()
    forced = dicomflow("unlock", study, series_uid, "--datastore", "ds", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert not lock.exists()
    retried = dicomflow("ingest", "in", "--datastore", "ds", cwd=tmp_path)
    assert "4 new, 4 duplicate(s), 0 conflict(s), 0 error(s)" in summary(retried)


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("get", "1.2.3", "-o", "x.dcm", "--datastore", "ds"), 1, 'no instance "1.2.3"'),
        (("get", "1.2.3", "-o", "x.dcm", "--datastore", "ds", "--study", "1.2"), 2, "both"),
        (("ls", "--datastore", "ds", "../x"), 1, "not a valid DICOM UID"),
        (("ingest", "nothing-here", "--datastore", "ds"), 2, "no DICOM files"),
        (("ls", "--datastore", "missing"), 2, 'Datastore "missing" does not exist'),
        (("verify", "--datastore", "missing"), 2, 'Datastore "missing" does not exist'),
    ],
)
def test_bad_requests_give_one_line_error(
    tmp_path: Path, args: tuple[str, ...], code: int, text: str
):
    (tmp_path / "ds").mkdir()
    result = dicomflow(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    errors = error_lines(result)
    assert len(errors) == 1 and text in errors[0], result.stderr
