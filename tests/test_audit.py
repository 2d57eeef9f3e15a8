"""The audit trail's file: one valid JSON object per line whatever the values, private
files, rotation by size with a bounded number of backups."""

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from dicomflow import audit
from dicomflow.audit import AssociationAudit, Direction, HttpAudit
from dicomflow.settings import build_settings


@pytest.fixture
def audit_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data" / "audit" / "audit.jsonl"
    audit.configure(path, max_bytes=1 << 20, backups=2)
    yield path
    audit.close()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


HOSTILE = ["", "../x", 'A"B\\C', "NUL\x00NUL", "line\nbreak\r\u2028", "\x1b[31mred", "x" * 10_000]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_stay_one_valid_json_line(audit_file: Path, value: str) -> None:
    record = AssociationAudit(Direction.RECEIVED, "127.0.0.1", 1234, value, value, value)
    record.count_received(True, value)
    record.finish(f"rejected: {value}")
    audit.emit(HttpAudit(value, value, "GET", "/" + value, 200, True, 0.0, 1.0))

    written = lines(audit_file)
    assert len(written) == 2
    association, http = (json.loads(line) for line in written)
    assert all(len(line) < 4000 for line in written), "values are cut"
    kept = value[: audit.MAX_TEXT]
    assert association["calling_ae_title"].startswith(kept)
    assert association["identity"].startswith(kept)
    assert http["user"].startswith(kept) and http["path"].startswith("/" + kept[:100])
    assert all(ord(c) < 128 and c.isprintable() for line in written for c in line)


def test_a_record_has_every_field_typed(audit_file: Path) -> None:
    record = AssociationAudit(Direction.SENT, "10.0.0.5", 104, "DICOMFLOW", "PACS")
    record.count_sent(True)
    record.count_sent(False)
    record.finish("released")
    record.finish("aborted")  # written once: the first result stays

    (line,) = lines(audit_file)
    values = json.loads(line)
    assert values["type"] == "association" and values["direction"] == "sent"
    assert (values["sent"], values["failed"], values["stored"], values["refused"]) == (1, 1, 0, 0)
    assert values["result"] == "released"
    assert values["started"].endswith("Z") and values["ended"] >= values["started"]
    assert values["study_uids"] == [] and values["tls"] == "" and values["identity"] == ""


def test_study_uids_are_bounded(audit_file: Path) -> None:
    record = AssociationAudit(Direction.RECEIVED, "127.0.0.1", 1)
    for index in range(audit.MAX_STUDY_UIDS + 50):
        record.count_received(True, f"1.2.3.{index}")
    record.count_received(False, None)
    record.finish("released")
    values = json.loads(lines(audit_file)[0])
    assert len(values["study_uids"]) == audit.MAX_STUDY_UIDS
    assert values["studies_truncated"] is True
    assert (values["stored"], values["refused"]) == (audit.MAX_STUDY_UIDS + 50, 1)


def test_folder_and_files_are_private(audit_file: Path) -> None:
    audit.refused("192.0.2.1", 5000, "ip")
    assert stat.S_IMODE(audit_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(audit_file.stat().st_mode) == 0o600


def test_rotation_keeps_a_bounded_number_of_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    audit.configure(path, max_bytes=2048, backups=3)
    try:
        for index in range(200):
            audit.refused(f"192.0.2.{index % 250}", index, "ip")
    finally:
        audit.close()
    files = sorted(path.parent.iterdir())
    assert [file.name for file in files] == [
        "audit.jsonl",
        "audit.jsonl.1",
        "audit.jsonl.2",
        "audit.jsonl.3",
    ]
    for file in files:
        assert file.stat().st_size <= 2048
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert all(json.loads(line)["result"] == "refused: ip" for line in lines(file))


def test_nothing_is_written_before_it_is_configured(tmp_path: Path) -> None:
    audit.close()
    assert not audit.enabled()
    audit.refused("192.0.2.1", 1, "ip")  # no file, no error
    assert list(tmp_path.iterdir()) == []


def test_settings_place_the_audit_log_in_the_data_directory(tmp_path: Path) -> None:
    settings = build_settings(data_directory=tmp_path / "data")
    assert settings.audit_log_file() == tmp_path / "data" / "audit" / "audit.jsonl"
    assert (settings.audit_log_max_bytes, settings.audit_log_backups) == (10 << 20, 10)
    chosen = build_settings(data_directory=tmp_path, audit_log_path="logs/audit.jsonl")
    assert chosen.audit_log_file() == Path.cwd() / "logs" / "audit.jsonl"
    for bad in ({"audit_log_max_bytes": 10}, {"audit_log_backups": 0}):
        with pytest.raises(ValidationError):
            build_settings(**bad)
