"""``dicomflow deid``: the real script on pydicom's corpus and hostile files, its key and
re-identification commands, and the node refusing to start on wrong de-identification
settings."""

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.uid import generate_uid

from dicomflow.dicom.deid import Pseudonymizer, create_key_file, load_key_file
from dicomflow.errors import DeidConfigError
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor
from support import NodeFactory

DICOMFLOW = str(Path(sys.executable).with_name("dicomflow"))
CORPUS = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "examples_overlay.dcm")
REFUSED = "SC_rgb_rle.dcm"  # secondary capture: may carry burned-in text
HOSTILE_PATIENT_IDS = {"dots": "../x", "empty": "", "nul": "a\0b", "long": "P" * 10_000}
HOSTILE_FILE_NAMES = ("--help", "a b;rm -rf ~.dcm", "é\nnew line.dcm", "..dcm")
PSEUDONYM_PATH = re.compile(r"^[A-Z2-7]{16}/2\.25\.\d+/2\.25\.\d+/2\.25\.\d+\.dcm$")


def dicomflow(
    *args: object, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("DICOMFLOW_")}
    return subprocess.run(
        [DICOMFLOW, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=base | (env or {}),
        timeout=120,
    )


def summary(result: subprocess.CompletedProcess[str]) -> str:
    """The report's last line, on stdout."""
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout.strip().splitlines()[-1]


def one_error(result: subprocess.CompletedProcess[str], code: int | None, text: str) -> str:
    """One error line holding ``text``, and exit status ``code`` (None: any but 0)."""
    expected = result.returncode != 0 if code is None else result.returncode == code
    assert expected, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], result.stderr
    return errors[0]


def write_hostile(source: str, folder: Path, name: str, patient_id: str) -> dict[str, str]:
    """A copy of ``source`` with a hostile PatientID, new UIDs and a hostile file name."""
    dataset = pydicom.dcmread(get_testdata_file(source))
    dataset[0x00100020] = DataElement(0x00100020, "LO", patient_id)
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.save_as(folder / name, enforce_file_format=True)
    return originals(dataset)


def originals(dataset: pydicom.Dataset) -> dict[str, str]:
    keywords = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    return {keyword: str(dataset.get(keyword, "")) for keyword in keywords}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IN (corpus, a refused secondary capture, hostile copies, junk) and a key made by
    ``dicomflow deid keygen``."""
    root = tmp_path_factory.mktemp("deid")
    source = root / "in"
    (source / "deep" / "er").mkdir(parents=True)
    for name in CORPUS:
        (source / "deep" / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    (source / REFUSED).write_bytes(Path(get_testdata_file(REFUSED)).read_bytes())
    for patient_id, name in zip(HOSTILE_PATIENT_IDS.values(), HOSTILE_FILE_NAMES, strict=True):
        write_hostile("CT_small.dcm", source / "deep" / "er", name, patient_id)
    (source / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    (source / "README.txt").write_text("not DICOM")
    made = dicomflow("deid", "keygen", root / "key", cwd=root)
    assert made.returncode == 0, made.stderr
    return root


@pytest.fixture(scope="module")
def first(tree: Path) -> subprocess.CompletedProcess[str]:
    args = ("--key-file", "key", "--reidentification-table", "table.sqlite", "--jobs", 1)
    return dicomflow("deid", "in", "out1", *args, "--options", "clean_descriptors", cwd=tree)


def relative_files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_keygen_makes_a_private_key_and_never_replaces_one(tree: Path):
    key = tree / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = dicomflow("deid", "keygen", key, cwd=tree)
    one_error(again, 1, "exists already; not replaced")
    assert key.read_bytes() == before


def test_writes_pseudonym_paths_only_and_reports_each_problem(
    tree: Path, first: subprocess.CompletedProcess[str]
):
    assert first.returncode == 1, first.stderr  # a refused and an unreadable file
    counts = "10 instance(s) into out1: 8 written, 1 refused, 1 unreadable, 0 failed"
    assert summary(first) == f"{counts}; 1 other file(s) skipped"
    refused = [line for line in first.stdout.splitlines() if line.startswith("refused")]
    assert len(refused) == 1 and REFUSED in refused[0] and "deid_pixel_cleaning" in refused[0]
    lines = first.stdout.splitlines()
    assert any(line.startswith("unreadable") and "broken.dcm" in line for line in lines)
    written = relative_files(tree / "out1")
    assert len(written) == 8
    assert all(PSEUDONYM_PATH.match(name) for name in written), sorted(written)


def test_outputs_decode_without_the_originals(tree: Path, first: subprocess.CompletedProcess[str]):
    hidden = set()
    for path in (tree / "in").rglob("*.dcm"):
        if path.name != "broken.dcm":
            hidden.update(v for v in originals(pydicom.dcmread(path)).values() if len(v) > 3)
    for name, data in relative_files(tree / "out1").items():
        dataset = pydicom.dcmread(tree / "out1" / name)
        assert dataset.PatientIdentityRemoved == "YES"
        assert name.split("/")[0] == dataset.PatientID
        assert name.endswith(f"/{dataset.SOPInstanceUID}.dcm")
        if "PixelData" in dataset:
            assert dataset.pixel_array.size > 0
        assert not [value for value in hidden if value.encode() in data + name.encode()]


def test_same_pseudonyms_again_and_in_parallel(tree: Path, first: subprocess.CompletedProcess[str]):
    again = dicomflow(
        "deid", "in", "out2", "--key-file", "key", "--jobs", 2, "--options", "clean_descriptors",
        cwd=tree,
    )  # fmt: skip
    assert summary(again).startswith("10 instance(s) into out2: 8 written"), again.stdout
    assert relative_files(tree / "out2") == relative_files(tree / "out1")


def test_another_key_gives_other_pseudonyms(tree: Path, first: subprocess.CompletedProcess[str]):
    assert dicomflow("deid", "keygen", "other-key", cwd=tree).returncode == 0
    other = dicomflow("deid", "in/deep", "out3", "--key-file", "other-key", cwd=tree)
    assert other.returncode == 0, other.stdout + other.stderr
    names = {part for name in relative_files(tree / "out3") for part in name.split("/")}
    first_names = {part for name in relative_files(tree / "out1") for part in name.split("/")}
    assert len(names) > 8 and not names & first_names


def test_reidentify_tells_what_a_pseudonym_stands_for(
    tree: Path, first: subprocess.CompletedProcess[str]
):
    table = tree / "table.sqlite"
    assert stat.S_IMODE(table.stat().st_mode) == 0o600
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pseudonymizer = Pseudonymizer(load_key_file(tree / "key"))
    patient, study = pseudonymizer.patient_id(ct.PatientID), pseudonymizer.uid(ct.StudyInstanceUID)
    assert (tree / "out1" / patient / study).is_dir()
    expected = {patient: f"patient\t{ct.PatientID}", study: f"study\t{ct.StudyInstanceUID}"}
    for pseudonym, answer in expected.items():
        found = dicomflow("deid", "reidentify", pseudonym, "--table", table, cwd=tree)
        assert found.returncode == 0, found.stderr
        assert found.stdout.splitlines() == [answer]
    one_error(dicomflow("deid", "reidentify", "NOPE", "--table", table, cwd=tree), 1, "NOPE")


def test_reidentify_refuses_a_table_others_can_read(tree: Path, tmp_path: Path):
    shared = tmp_path / "shared.sqlite"
    shared.write_bytes(b"")
    shared.chmod(0o644)
    result = dicomflow("deid", "reidentify", "X", "--table", shared, cwd=tmp_path)
    one_error(result, 2, "--table: ")
    assert "readable by others" in result.stderr


def test_retained_hostile_uid_never_becomes_a_path(tree: Path, tmp_path: Path):
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "../../x"
    (tmp_path / "in").mkdir()
    dataset.save_as(tmp_path / "in" / "a.dcm", enforce_file_format=True)
    options = ("--options", "retain_uids", "--key-file", tree / "key")
    result = dicomflow("deid", "in", "out", *options, cwd=tmp_path)
    assert result.returncode == 1
    assert summary(result).endswith("0 written, 0 refused, 0 unreadable, 1 failed")
    assert "is not a valid DICOM UID" in result.stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.dcm", "in"]


def test_default_key_is_the_nodes(tree: Path, tmp_path: Path):
    env = {"DICOMFLOW_DATA_DIRECTORY": str(tmp_path / "data")}
    result = dicomflow("deid", tree / "in" / "deep", "out", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    key = tmp_path / "data" / "deid" / "key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and str(key) in result.stderr


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("--options", "retain_everything"), "--options: 'retain_everything' is not an option"),
        (("--profile", "strict"), "--profile: 'strict' is unknown"),
        (("--options", "retain_safe_private", "--safe-private", "X,0010,0C"), "--safe-private:"),
        (("--key-file", "open-key"), "--key-file: "),
        (("--key-file", "missing-key"), "--key-file: cannot read"),
    ],
    ids=["option", "profile", "safe-private", "key-0644", "key-missing"],
)
def test_bad_options_are_named(tree: Path, tmp_path: Path, args: tuple[str, ...], text: str):
    (tmp_path / "open-key").write_bytes((tree / "key").read_bytes())
    (tmp_path / "open-key").chmod(0o644)
    result = dicomflow("deid", tree / "in" / "deep", "out", *args, cwd=tmp_path)
    one_error(result, 2, text)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("source", "out", "text"),
    [
        ("nowhere", "out", 'IN "nowhere" does not exist'),
        ("in", "in/deep/out", "is inside IN"),
        ("in", "in", "is inside IN"),
        ("in/deep", "in/README.txt", "is not a folder"),
    ],
)
def test_bad_in_and_out_are_named(tree: Path, source: str, out: str, text: str):
    one_error(dicomflow("deid", source, out, "--key-file", "key", cwd=tree), 2, text)


def test_jobs_must_be_positive(tree: Path):
    result = dicomflow("deid", "in", "o", "--jobs", 0, cwd=tree)
    one_error(result, 2, "--jobs")


@pytest.mark.parametrize(
    ("flags", "text"),
    [
        (("--archive-deid", "--deid-key-file", "open-key"), "deid_key_file: "),
        (("--deid-options", "clean_descriptors,bogus"), "deid_options: 'bogus'"),
    ],
    ids=["key-0644", "option"],
)
def test_node_does_not_start_on_wrong_deid_settings(
    tree: Path, tmp_path: Path, flags: tuple[str, ...], text: str
):
    (tmp_path / "open-key").write_bytes((tree / "key").read_bytes())
    (tmp_path / "open-key").chmod(0o644)
    node = ("--archive", tmp_path / "archive", "--data-dir", tmp_path / "data", "--port", 0)
    result = dicomflow("serve", *node, "--no-web", *flags, cwd=tmp_path)
    one_error(result, None, text)  # found by the archive's set-up (2) or by the start (1)


class _AnyInstance(AbstractInput):
    required_tags = ["SOPInstanceUID"]


class _IdlePipeline(AbstractPipeline):
    input = {"any": _AnyInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> list[Any]:
            return []


def test_node_start_checks_deid_settings_only_when_used(make_node: NodeFactory, tmp_path: Path):
    plain = make_node(_IdlePipeline, data_directory=tmp_path / "plain")
    assert plain.port and not (tmp_path / "plain" / "deid").exists()
    key = create_key_file(tmp_path / "key")
    key.chmod(0o644)
    with pytest.raises(DeidConfigError, match=r"deid_key_file: .* readable by others"):
        make_node(_IdlePipeline, archive_deid=True, deid_key_file=key)
    key.chmod(0o600)  # and the refused start left the data directory free
    assert make_node(_IdlePipeline, archive_deid=True, deid_key_file=key).port
