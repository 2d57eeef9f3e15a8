"""S3 datastores (moto's S3-compatible server): server-side appends and real preconditions."""

import uuid
from typing import Any

import pytest
from cod_support import BUCKET, SeriesFactory

from dicomflow.cod import CODObject
from dicomflow.cod.archive import BLOCK, END_MARKER, padded
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.cod.s3store import MIN_PART, S3Store, copy_ranges
from dicomflow.errors import LockAcquisitionError

Call = tuple[str, dict[str, Any], int]


@pytest.fixture
def s3_datastore(s3_endpoint: str) -> str:
    return f"s3://{BUCKET}/cod-{uuid.uuid4().hex}"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every S3 request of the stores: (method, parameters without the body, body size)."""
    recorded: list[Call] = []
    original = S3Store._call

    def record(self: S3Store, method: str, **kwargs: Any) -> dict[str, Any]:
        body = kwargs.get("Body", b"")
        shown = {key: value for key, value in kwargs.items() if key != "Body"}
        recorded.append((method, shown, len(body)))
        return original(self, method, **kwargs)

    monkeypatch.setattr(S3Store, "_call", record)
    return recorded


def _store(datastore: str, series: Any) -> None:
    with CODObject(datastore, series.study_uid, series.series_uid, lock=True) as cod:
        assert cod.append(series.instances()).errors == []
        cod.sync()


def test_copy_ranges_cover_the_object_in_parts_of_at_most_the_limit() -> None:
    assert list(copy_ranges(10, largest=4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(copy_ranges(8, largest=4)) == [(0, 4), (4, 8)]
    assert list(copy_ranges(3, largest=4)) == [(0, 3)]


def test_appending_to_a_large_series_sends_only_the_new_members(
    s3_datastore: str, series: SeriesFactory, calls: list[Call]
) -> None:
    large = series(11, rows=512, columns=512)
    _store(s3_datastore, large)
    fs, root = open_datastore(s3_datastore)
    tar = SeriesLayout(root, large.study_uid, large.series_uid).tar
    before = fs.cat_file(tar)
    assert len(before) > MIN_PART
    more = series(
        10,
        name="more",
        rows=64,
        columns=64,
        study_instance_uid=large.study_uid,
        series_instance_uid=large.series_uid,
    )
    calls.clear()
    _store(s3_datastore, more)
    added = sum(BLOCK + padded(path.stat().st_size) for path in more.paths)
    tar_calls = [(m, p, n) for m, p, n in calls if p.get("Key", "").endswith(".tar")]
    assert sum(size for _, _, size in tar_calls) == added + len(END_MARKER)
    tar_calls = [call for call in tar_calls if call[0] != "head_object"]
    methods = [method for method, _, _ in tar_calls]
    assert methods == [
        "create_multipart_upload",
        "upload_part_copy",
        "upload_part",
        "complete_multipart_upload",
    ]
    etag = tar_calls[1][1]["CopySourceIfMatch"]
    assert tar_calls[1][1]["CopySourceRange"] == f"bytes=0-{len(before) - len(END_MARKER) - 1}"
    assert tar_calls[3][1]["IfMatch"] == etag
    fs.invalidate_cache()
    after = fs.cat_file(tar)
    assert after[: len(before) - len(END_MARKER)] == before[: -len(END_MARKER)]
    assert len(after) == len(before) + added
    reader = CODObject(s3_datastore, large.study_uid, large.series_uid, lock=False)
    assert len(reader.list_instances()) == 21
    for path, uid in zip(more.paths + large.paths[:2], more.uids() + large.uids()[:2], strict=True):
        assert reader.get(uid) == path.read_bytes()


def test_every_write_is_conditional(
    s3_datastore: str, series: SeriesFactory, calls: list[Call]
) -> None:
    s = series(2)
    instances = s.instances()
    with CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(instances[:1])
        cod.sync()
        cod.append(instances[1:])
        cod.sync()
    writes = [(m, p) for m, p, _ in calls if m in ("put_object", "delete_object")]
    conditions = [
        (m, p["Key"].rsplit("/", 1)[-1], set(p) & {"IfMatch", "IfNoneMatch"}) for m, p in writes
    ]
    uid = s.series_uid
    assert conditions == [
        ("put_object", ".cod.lock", {"IfNoneMatch"}),
        ("put_object", f"{uid}.tar", {"IfNoneMatch"}),
        ("put_object", "metadata.json", {"IfNoneMatch"}),
        ("put_object", f"{uid}.tar", {"IfMatch"}),
        ("put_object", "metadata.json", {"IfMatch"}),
        ("delete_object", ".cod.lock", {"IfMatch"}),
    ]


def test_a_writer_past_its_lock_check_is_stopped_by_the_preconditions(
    s3_datastore: str, series: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is broken between the stale writer's lock check and its writes."""
    s = series(3)
    first, second, third = s.instances()
    with CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append([first])
        cod.sync()
    stale = CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True)
    stale.append([second])
    fs, root = open_datastore(s3_datastore)
    fs.rm(SeriesLayout(root, s.study_uid, s.series_uid).lock)
    with CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True) as current:
        current.append([third])
        current.sync()
    monkeypatch.setattr(stale._locker, "verify", lambda: None)
    with pytest.raises(LockAcquisitionError, match="changed by another writer"):
        stale.sync()
    reader = CODObject(s3_datastore, s.study_uid, s.series_uid, lock=False)
    uids = s.uids()
    assert reader.list_instances() == sorted([uids[0], uids[2]])
    assert reader.get(uids[2]) == s.paths[2].read_bytes()


def test_metadata_written_by_another_writer_is_not_overwritten(
    s3_datastore: str, series: SeriesFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two writers with no tar bytes to add race on metadata.json: the second one loses."""
    s = series(1)
    with CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True) as cod:
        cod.append(s.instances())
        cod.sync()
    stale = CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True)
    fs, root = open_datastore(s3_datastore)
    fs.rm(SeriesLayout(root, s.study_uid, s.series_uid).lock)
    with CODObject(s3_datastore, s.study_uid, s.series_uid, lock=True) as current:
        current.other["note"] = "current"
        current.sync()
    monkeypatch.setattr(stale._locker, "verify", lambda: None)
    stale.other["note"] = "stale"
    with pytest.raises(LockAcquisitionError, match=r"metadata\.json"):
        stale.sync()
    assert CODObject(s3_datastore, s.study_uid, s.series_uid, lock=False).other == {
        "note": "current"
    }


@pytest.mark.parametrize(
    ("code", "conflict"),
    [
        ("PreconditionFailed", True),
        ("ConditionalRequestConflict", True),  # AWS: a concurrent conditional write (409)
        ("NoSuchKey", True),  # If-Match on an object that was deleted
        ("AccessDenied", False),
        ("NoSuchBucket", False),
    ],
)
def test_which_s3_errors_are_conflicts(code: str, conflict: bool) -> None:
    from botocore.exceptions import ClientError
    from s3fs.errors import translate_boto_error

    from dicomflow.cod.s3store import _precondition_failed

    error = ClientError({"Error": {"Code": code, "Message": code}}, "PutObject")
    assert _precondition_failed(translate_boto_error(error)) is conflict
