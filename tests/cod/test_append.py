"""Append semantics: new, duplicates (by hints, without fetching), conflicts and errors."""

import os
from pathlib import Path

import pytest
from cod_support import SeriesFactory

from dicomflow.cod import CODObject, Hints, Instance, list_series
from dicomflow.cod.archive import BLOCK, padded
from dicomflow.cod.checksum import checksum
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import CODError, CODInstanceError, InvalidKeyError


def _store(datastore: str, study_uid: str, series_uid: str, instances: list[Instance]) -> None:
    with CODObject(datastore, study_uid, series_uid, lock=True) as cod:
        assert cod.append(instances).errors == []
        cod.sync()


def test_hinted_duplicates_are_not_fetched(
    datastore: str, series: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = series(3)
    _store(datastore, s.study_uid, s.series_uid, s.instances())
    hinted = s.instances(hinted=True)
    fetches: list[str] = []
    original = Instance._fetch
    monkeypatch.setattr(Instance, "_fetch", lambda self: fetches.append(self) or original(self))
    for path in s.paths:
        path.unlink()
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append(hinted)
        cod.sync()
    assert (len(result.duplicates), result.new, result.errors, fetches) == (3, [], [], [])


def test_wrong_hints_are_errors_and_store_nothing(datastore: str, series: SeriesFactory) -> None:
    s = series(3)
    data = [p.read_bytes() for p in s.paths]
    bad = [
        Instance(str(s.paths[0]), hints=Hints(crc32c=checksum(b"other"))),
        Instance(str(s.paths[1]), hints=Hints(size=len(data[1]) + 1)),
        Instance(str(s.paths[2]), hints=Hints(instance_uid="1.2.3", crc32c=checksum(data[2]))),
    ]
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append(bad)
        cod.sync()
        assert cod.list_instances() == []
    assert [inst for inst, _ in result.errors] == bad
    assert all(isinstance(exc, CODInstanceError) for _, exc in result.errors)


def test_conflicting_reappend_keeps_stored_copy(
    datastore: str, series: SeriesFactory, tmp_path: Path
) -> None:
    s = series(1)
    _store(datastore, s.study_uid, s.series_uid, s.instances())
    changed = s.datasets[0].copy()
    changed.PatientName = "Other^Name"
    path = write_series([changed], tmp_path / "changed")[0]
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append([Instance(str(path))])
        cod.sync()
    assert (len(result.conflicts), result.new, result.duplicates) == (1, [], [])
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    uid = s.uids()[0]
    assert reader.instance_metadata(uid)["diff_hash_dupe_paths"] == [str(path)]
    assert reader.get(uid) == s.paths[0].read_bytes()


def test_fetched_duplicate_and_dependencies(datastore: str, series: SeriesFactory) -> None:
    s = series(2)
    first = Instance(str(s.paths[0]), dependencies=[str(s.paths[0])])
    with pytest.raises(CODError, match="not been verified"):
        first.delete_dependencies()
    _store(datastore, s.study_uid, s.series_uid, [first])
    assert first.dicom_uri.endswith(f".tar://instances/{s.uids()[0]}.dcm")
    assert first._original_path == str(s.paths[0])
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append(s.instances())
        cod.sync()
    assert (len(result.duplicates), len(result.new)) == (1, 1)
    assert first.delete_dependencies() == [str(s.paths[0])]
    assert not s.paths[0].exists()


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom")
def test_bad_instances_are_errors_not_exceptions(
    datastore: str, series: SeriesFactory, tmp_path: Path
) -> None:
    s = series(1)
    other = series(1, name="other")
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a DICOM file" * 20)
    hostile = []
    for uid in ("../../x", "/abs", "", "1." * 40 + "1"):
        ds = make_ct_series(
            1, rows=4, columns=4, study_instance_uid=s.study_uid, series_instance_uid=s.series_uid
        )[0]
        ds.SOPInstanceUID = uid
        hostile.extend(write_series([ds], tmp_path / f"hostile{len(hostile)}"))
    bad = [Instance(str(p)) for p in [*other.paths, garbage, tmp_path / "missing.dcm", *hostile]]
    bad.append(Instance(str(s.paths[0]), hints=Hints(instance_uid="../../x", crc32c="AAAAAA==")))
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append([*bad, *s.instances()])
        cod.sync()
    assert [inst for inst, _ in result.errors] == bad
    assert len(result.new) == 1
    assert CODObject(datastore, s.study_uid, s.series_uid, lock=False).list_instances() == s.uids()
    assert not list(tmp_path.parent.rglob("x.dcm"))


def test_a_series_none_of_whose_instances_could_be_appended_is_not_written(
    datastore: str, series: SeriesFactory, tmp_path: Path
) -> None:
    s = series(1)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a DICOM file" * 20)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append([Instance(str(garbage))])
        cod.sync()
    assert len(result.errors) == 1
    assert list_series(datastore, s.study_uid) == [], "no series without instances"


def test_hostile_series_uids_are_rejected(datastore: str) -> None:
    for study_uid, series_uid in (("../../x", "1.2"), ("1.2", "/abs"), ("", "1.2")):
        with pytest.raises(InvalidKeyError):
            CODObject(datastore, study_uid, series_uid, lock=True)


def test_append_writes_only_new_bytes(datastore: str, series: SeriesFactory) -> None:
    s = series(1000, rows=4, columns=4)
    _store(datastore, s.study_uid, s.series_uid, s.instances())
    fs, root = open_datastore(datastore)
    tar_path = SeriesLayout(root, s.study_uid, s.series_uid).tar
    before = fs.cat_file(tar_path)
    inode = os.stat(tar_path).st_ino if fs.protocol[0] == "file" else None
    more = series(
        10,
        name="more",
        rows=4,
        columns=4,
        study_instance_uid=s.study_uid,
        series_instance_uid=s.series_uid,
    )
    _store(datastore, s.study_uid, s.series_uid, more.instances())
    after = fs.cat_file(tar_path)
    added = sum(BLOCK + padded(p.stat().st_size) for p in more.paths)
    assert len(after) == len(before) + added
    assert after[: len(before) - 2 * BLOCK] == before[: -2 * BLOCK]
    if inode is not None:
        assert os.stat(tar_path).st_ino == inode
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    assert len(reader.list_instances()) == 1010
    assert reader.get(more.uids()[-1]) == more.paths[-1].read_bytes()
