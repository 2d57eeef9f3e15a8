"""Round trip, reads, metadata and catalog of a COD series (local and memory datastores)."""

import io
import json
import os
import tarfile
from pathlib import Path

import pydicom
import pytest
from cod_support import SeriesFactory

from dicomflow.cod import CODObject, list_series, list_studies
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.errors import CODError, CODIntegrityError, CODNotFoundError


def _layout(datastore: str, study_uid: str, series_uid: str) -> SeriesLayout:
    return SeriesLayout(open_datastore(datastore)[1], study_uid, series_uid)


def test_round_trip(datastore: str, series: SeriesFactory) -> None:
    s = series(4, rows=32, columns=32)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        result = cod.append(s.instances())
        cod.sync()
    assert (len(result.new), result.duplicates, result.conflicts, result.errors) == (4, [], [], [])
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    assert reader.list_instances() == sorted(s.uids())
    for path, uid in zip(s.paths, s.uids(), strict=True):
        assert reader.get(uid) == path.read_bytes()
    assert list_studies(datastore) == [s.study_uid]
    assert list_series(datastore, s.study_uid) == [s.series_uid]


def test_metadata_is_pydicom_json_without_bulk_data(datastore: str, series: SeriesFactory) -> None:
    s = series(2, rows=32, columns=32)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.sync()
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    for path, uid in zip(s.paths, s.uids(), strict=True):
        record = reader.instance_metadata(uid)
        ds = pydicom.dcmread(path)
        expected = {**ds.file_meta.to_json_dict(), **ds.to_json_dict()}
        pixel = record["metadata"].pop("7FE00010")
        del expected["7FE00010"]
        assert record["metadata"] == expected
        assert pixel["BulkDataURI"].startswith(record["uri"])
        assert record["uri"].endswith(f".tar://instances/{uid}.dcm")
        headers = record["headers"]
        assert (
            headers["end_byte"] - headers["start_byte"] == record["size"] == len(path.read_bytes())
        )
        assert record["original_path"] == str(path)


def test_tar_is_standard_and_ranges_are_exact(datastore: str, series: SeriesFactory) -> None:
    s = series(3)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.sync()
    fs, _ = open_datastore(datastore)
    layout = _layout(datastore, s.study_uid, s.series_uid)
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    with tarfile.open(fileobj=io.BytesIO(fs.cat_file(layout.tar))) as tar:
        members = tar.getmembers()
        assert sorted(m.name for m in members) == sorted(f"instances/{u}.dcm" for u in s.uids())
        for member in members:
            uid = member.name.removeprefix("instances/").removesuffix(".dcm")
            headers = reader.instance_metadata(uid)["headers"]
            assert (member.offset_data, member.offset_data + member.size) == (
                headers["start_byte"],
                headers["end_byte"],
            )


def test_user_fields_never_overwrite_cod(datastore: str, series: SeriesFactory) -> None:
    s = series(1)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.other["cod"] = "overwritten?"
        cod.sync()
    fs, _ = open_datastore(datastore)
    document = json.loads(fs.cat_file(_layout(datastore, s.study_uid, s.series_uid).metadata))
    assert list(document["cod"]["instances"]) == s.uids()
    assert document["other"] == {"cod": "overwritten?"}


def test_get_detects_corrupted_bytes(datastore: str, series: SeriesFactory) -> None:
    s = series(1)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.sync()
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    start = reader.instance_metadata(s.uids()[0])["headers"]["start_byte"]
    fs, _ = open_datastore(datastore)
    tar_path = _layout(datastore, s.study_uid, s.series_uid).tar
    data = bytearray(fs.cat_file(tar_path))
    data[start + 200] ^= 0xFF
    fs.pipe_file(tar_path, bytes(data))
    with pytest.raises(CODIntegrityError, match="crc32c"):
        reader.get(s.uids()[0])
    with pytest.raises(CODNotFoundError):
        reader.get("1.2.3")


def test_lock_must_be_chosen(datastore: str) -> None:
    with pytest.raises(CODError, match="lock is None"):
        CODObject(datastore, "1.2.3", "1.2.3.4")


def test_unlocked_object_changes_only_when_dirty(datastore: str, series: SeriesFactory) -> None:
    s = series(2)
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    with pytest.raises(CODError, match="append needs lock=True"):
        reader.append(s.instances())
    with pytest.raises(CODError, match="sync needs lock=True"):
        reader.sync()
    assert len(reader.append(s.instances(), dirty=True).new) == 2
    reader.sync(dirty=True)
    assert reader.get(s.uids()[0]) == s.paths[0].read_bytes()
    fs, _ = open_datastore(datastore)
    assert not fs.exists(_layout(datastore, s.study_uid, s.series_uid).tar)
    assert list_series(datastore, s.study_uid) == []


def test_catalog_of_empty_datastore(datastore: str) -> None:
    assert list_studies(datastore) == []
    assert list_series(datastore, "1.2.3") == []


def test_bytes_of_a_failed_sync_are_overwritten(datastore: str, series: SeriesFactory) -> None:
    s = series(2)
    instances = s.instances()
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(instances[:1])
        cod.sync()
    fs, _ = open_datastore(datastore)
    tar_path = _layout(datastore, s.study_uid, s.series_uid).tar
    fs.pipe_file(tar_path, fs.cat_file(tar_path) + b"uncommitted" * 1000)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(instances[1:])
        cod.sync()
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    assert [reader.get(uid) for uid in s.uids()] == [p.read_bytes() for p in s.paths]
    with tarfile.open(fileobj=io.BytesIO(fs.cat_file(tar_path))) as tar:
        assert len(tar.getmembers()) == 2


def test_a_reader_follows_a_local_tar_replaced_by_another_file(
    tmp_path: Path, series: SeriesFactory
) -> None:
    """Local reads keep the tar open; a tar replaced (new inode) is reopened, not misread."""
    datastore = str(tmp_path / "datastore")
    s = series(2)
    with CODObject(datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.sync()
    reader = CODObject(datastore, s.study_uid, s.series_uid, lock=False)
    assert reader.get(s.uids()[0]) == s.paths[0].read_bytes()
    tar = Path(_layout(datastore, s.study_uid, s.series_uid).tar)
    copy = tar.with_suffix(".copy")
    copy.write_bytes(tar.read_bytes())
    with tar.open("r+b") as old:  # the file the reader holds open goes bad...
        old.write(b"\0" * tar.stat().st_size)
    os.replace(copy, tar)  # ...and a good one takes its name
    assert reader.get(s.uids()[1]) == s.paths[1].read_bytes()
    tar.write_bytes(b"\0" * tar.stat().st_size)
    with pytest.raises(CODIntegrityError):
        reader.get(s.uids()[0])
