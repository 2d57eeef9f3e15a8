"""The Cloud Optimized DICOM library's examples and interface, on ``dicomflow.cod``.

Seed 003 (the library's README) gives ten examples; each runs here with only the
import root changed, on a local directory and on ``memory://``. The README's
``client=...``/``datastore_path=...`` placeholders are filled in: a fake client
object stands for ``google.cloud.storage.Client()`` (no cloud bucket here), and the
series UIDs the README leaves out are added. Statements the README says raise are
run expecting that exception.
"""

import ast
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec  # type: ignore[import-untyped]
import pytest
from pydicom import Dataset

from dicomflow.cod.checksum import checksum
from dicomflow.cod.cod_object import CODObject
from dicomflow.cod.errors import (
    CleanOpOnUnlockedCODObjectError,
    CODObjectNotFoundError,
    ErrorLogExistsError,
    LockAcquisitionError,
    LockVerificationError,
)
from dicomflow.cod.hints import Hints
from dicomflow.cod.instance import Instance
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import InvalidKeyError

# --- the README's examples (seed 003), verbatim -------------------------------------

CONTEXT_MANAGER = """
with CODObject(client=..., datastore_path=..., lock=True) as cod:
    cod.append(instances)
    cod.sync()
    # lock exists within context
    assert cod._locker.get_lock_blob().exists() is True
# lock is released when context is exited
assert cod._locker.get_lock_blob().exists() is False
"""

HANGING_ON_ERROR = """
with CODObject(client=..., datastore_path=..., lock=True) as cod:
    raise ValueError("test")
# assertion will pass; lock file persists
assert cod._locker.get_lock_blob().exists() is True
"""

OUT_OF_SCOPE = """
cod_a = CODObject(client=..., datastore_path=..., lock=True)
# do some stuff
cod_a.append(instances)
cod_a.sync()
del cod_a
# cod_a is now out of scope, but lock still exists in the remote datastore
cod_b = CODObject(client=..., datastore_path=..., lock=True)
# the above will raise a LockAcquisitionError because the lock persists
"""

DOFNS = """
def dofn_first():
    # note the LACK of "with" context manager here
    cod_obj = CODObject(client=..., datastore_path=..., lock=True)
    # do some stuff
    yield cod_obj.serialize() # lock persists

# ... (other dofns here, also without context managers)

def dofn_last(serialized_cod):
    # persistent lock reacquired during deserialization
    with CODObject.deserialize(**serialized_cod, client=...) as cod_obj:
        # do some stuff
        cod_obj.append(instances)
        cod_obj.sync()
    # lock released when "with" block exited
"""

PRELUDE = """
from dicomflow.cod.cod_object import CODObject
from dicomflow.cod.instance import Instance
from dicomflow.cod.errors import LockAcquisitionError
"""


class FakeStorageClient:
    """Stands for ``google.cloud.storage.Client()``: a client object the CODObject keeps."""

    project = "local-test"


@dataclass
class Example:
    datastore: str
    study_uid: str
    series_uid: str
    paths: list[Path]
    datasets: list[Dataset]

    def fill(self, code: str) -> str:
        """The README code with its placeholders filled in."""
        where = "datastore_path=DATASTORE, study_uid=STUDY, series_uid=SERIES"
        return code.replace("client=...", "client=client").replace("datastore_path=...", where)

    def namespace(self) -> dict[str, Any]:
        namespace: dict[str, Any] = {
            "client": FakeStorageClient(),
            "DATASTORE": self.datastore,
            "STUDY": self.study_uid,
            "SERIES": self.series_uid,
        }
        exec(PRELUDE, namespace)
        namespace["instances"] = [namespace["Instance"](str(path)) for path in self.paths]
        return namespace

    def reader(self) -> CODObject:
        return CODObject(self.datastore, self.study_uid, self.series_uid, lock=False)

    def uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def run(code: str, namespace: dict[str, Any], raises: dict[int, type[BaseException]]) -> None:
    """Run ``code`` one top-level statement at a time; statement ``i`` in ``raises`` must
    raise that exception (the README says so), and the next statements still run."""
    for index, node in enumerate(ast.parse(code).body):
        compiled = compile(ast.Module([node], type_ignores=[]), "<seed-003>", "exec")
        if index in raises:
            with pytest.raises(raises[index]):
                exec(compiled, namespace)
        else:
            exec(compiled, namespace)


@pytest.fixture(params=["local", "memory"])
def example(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Example]:
    """Three CT instances of one series on disk, and an empty datastore to put them in."""
    if request.param == "local":
        datastore = str(tmp_path / "datastore")
    else:
        datastore = f"memory://cod-compat-{uuid.uuid4().hex}"
    datasets = make_ct_series(3, rows=8, columns=8)
    paths = write_series(datasets, tmp_path / "incoming")
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    yield Example(datastore, study, series, paths, datasets)
    if request.param == "memory":
        fs, root = fsspec.core.url_to_fs(datastore)
        if fs.exists(root):
            fs.rm(root, recursive=True)


# --- the ten examples ------------------------------------------------------------------


def test_example_1_context_manager_holds_then_releases_the_lock(example: Example) -> None:
    run(example.fill(CONTEXT_MANAGER), example.namespace(), {})
    assert example.reader().list_instances() == sorted(example.uids())


def test_example_2_error_leaves_the_lock_hanging(example: Example) -> None:
    namespace = example.namespace()
    run(example.fill(HANGING_ON_ERROR), namespace, {0: ValueError})
    with pytest.raises(LockAcquisitionError):
        CODObject(example.datastore, example.study_uid, example.series_uid, lock=True)


def test_example_3_out_of_scope_object_keeps_its_lock(example: Example) -> None:
    run(example.fill(OUT_OF_SCOPE), example.namespace(), {4: LockAcquisitionError})
    assert example.reader().list_instances() == sorted(example.uids())


def test_example_4_serialized_object_reacquires_its_lock(example: Example) -> None:
    namespace = example.namespace()
    run(example.fill(DOFNS), namespace, {})
    serialized = next(namespace["dofn_first"]())
    namespace["dofn_last"](serialized)
    reader = example.reader()
    assert reader.list_instances() == sorted(example.uids())
    assert not reader._locker.get_lock_blob().exists()


def test_example_5_lock_must_be_chosen(example: Example) -> None:
    with pytest.raises(TypeError, match="lock"):
        CODObject(
            client=FakeStorageClient(),
            datastore_path=example.datastore,
            study_uid=example.study_uid,
            series_uid=example.series_uid,
        )


def test_example_6_unlocked_object_changes_only_when_dirty(example: Example) -> None:
    reader = example.reader()
    instances = [Instance(str(path)) for path in example.paths]
    with pytest.raises(CleanOpOnUnlockedCODObjectError):
        reader.append(instances)
    new, same, conflict, errors = reader.append(instances, dirty=True)
    assert (len(new), same, conflict, errors) == (3, [], [], [])
    reader.sync(dirty=True)
    assert not example.reader()._locker.get_lock_blob().exists()
    assert example.reader().list_instances() == []


def test_example_7_dicom_uri_and_original_path(example: Example) -> None:
    source = f"memory://incoming-{uuid.uuid4().hex}/example.dcm"
    fsspec.filesystem("memory").pipe_file(source, example.paths[0].read_bytes())
    instance = Instance(dicom_uri=source)
    assert instance.dicom_uri == instance._original_path == source
    instance.open()
    with CODObject(
        datastore_path=example.datastore,
        client=FakeStorageClient(),
        study_uid=example.study_uid,
        series_uid=example.series_uid,
        lock=True,
    ) as cod:
        cod.append([instance])
        cod.sync()
    uid = example.uids()[0]
    assert instance._original_path == source
    assert instance.dicom_uri.endswith(f".tar://instances/{uid}.dcm")
    assert instance.dicom_uri.startswith(("file://", "memory://"))
    assert example.reader().instance_metadata(uid)["original_path"] == source


def test_example_8_hints_skip_fetching_duplicates(example: Example) -> None:
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        cod.append([Instance(str(path)) for path in example.paths])
        cod.sync()
    hinted = []
    for ds, path in zip(example.datasets, example.paths, strict=True):
        hints = Hints(instance_uid=str(ds.SOPInstanceUID), crc32c=checksum(path.read_bytes()))
        hinted.append(Instance(str(path), hints=hints))
        path.unlink()  # a duplicate is recognised without fetching the file
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        new, same, conflict, errors = cod.append(hinted)
    assert (new, len(same), conflict, errors) == ([], 3, [], [])


def test_example_9_dependencies_deleted_after_ingestion(example: Example) -> None:
    dependency = example.paths[0].with_suffix(".j2c")
    dependency.write_bytes(b"the other half of an instance")
    instance = Instance(str(example.paths[0]), dependencies=[str(dependency)])
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        cod.append([instance])
        cod.sync()
    assert instance.delete_dependencies() == [str(dependency)]
    assert not dependency.exists()


def _original_reader(document: dict[str, Any]) -> dict[str, Any]:
    """Read a metadata.json the way a reader written for the original library does:
    the top level and every field of each instance record, by key."""
    series = {key: document[key] for key in ("study_uid", "series_uid", "thumbnail")}
    series["deid"] = (document.get("deid_study_uid"), document.get("deid_series_uid"))
    series["instances"] = {}
    for uid, record in document["cod"]["instances"].items():
        if record.get("version") != "1.0":
            raise ValueError(f"{uid}: version {record.get('version')}")
        series["instances"][uid] = {
            "dicom_uri": record["uri"],
            "metadata": record["metadata"],
            "byte_offsets": (record["headers"]["start_byte"], record["headers"]["end_byte"]),
            "offset_tables": record["offset_tables"],
            "size": record["size"],
            "crc32c": record["crc32c"],
            "dependencies": record["dependencies"],
            "original_path": record["original_path"],
            "modified_datetime": record["modified_datetime"],
            "diff_hash_dupe_paths": record["diff_hash_dupe_paths"],
        }
    return series


def test_example_10_metadata_format_loads_in_an_original_reader(example: Example) -> None:
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        cod.append([Instance(str(path)) for path in example.paths])
        cod.sync()
        metadata_uri = cod.metadata_uri
    with fsspec.open(metadata_uri, "rb") as file:
        series = _original_reader(json.load(file))
    assert (series["study_uid"], series["series_uid"]) == (example.study_uid, example.series_uid)
    assert series["thumbnail"] is None and series["deid"] == (None, None)
    assert sorted(series["instances"]) == sorted(example.uids())
    with fsspec.open(cod.tar_uri, "rb") as tar:
        tar_bytes = tar.read()
    for uid, path in zip(example.uids(), example.paths, strict=True):
        record = series["instances"][uid]
        start, end = record["byte_offsets"]
        assert tar_bytes[start:end] == path.read_bytes()  # end_byte is exclusive
        assert record["offset_tables"] == {}
        assert record["metadata"]["00080018"]["Value"] == [uid]
        assert record["dicom_uri"].endswith(f".tar://instances/{uid}.dcm")


# --- the interface the original tests use ------------------------------------------


def test_uris_and_str_follow_the_datastore_path(example: Example) -> None:
    cod = CODObject(
        datastore_path=example.datastore,
        client=FakeStorageClient(),
        study_uid=example.study_uid,
        series_uid=example.series_uid,
        lock=False,
    )
    series = f"{example.datastore}/studies/{example.study_uid}/series/{example.series_uid}"
    assert cod.tar_uri == f"{series}.tar"
    assert cod.metadata_uri == f"{series}/metadata.json"
    assert cod.index_uri == f"{series}/index.sqlite"
    assert cod.error_log_uri == f"{series}/error.log"
    assert str(cod) == f"CODObject({series})"
    assert isinstance(cod.client, FakeStorageClient)


def test_client_may_be_an_fsspec_filesystem(example: Example) -> None:
    memory = fsspec.filesystem("memory")
    datastore = f"memory://cod-client-{uuid.uuid4().hex}"
    with CODObject(
        datastore, example.study_uid, example.series_uid, lock=True, client=memory
    ) as cod:
        cod.append([Instance(str(example.paths[0]))])
        cod.sync()
    assert memory.exists(cod.metadata_uri)
    memory.rm(datastore, recursive=True)


def test_deserialize_takes_the_dict_positionally_or_as_keywords(example: Example) -> None:
    client = FakeStorageClient()
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=False) as cod:
        serialized = cod.serialize()
    with CODObject.deserialize(serialized, client) as positional:
        assert positional.serialize() == serialized
        assert positional.client is client
    locked = CODObject(example.datastore, example.study_uid, example.series_uid, lock=True)
    data = locked.serialize()
    with CODObject.deserialize(data, client) as again:
        assert again.lock and again.lock_generation == locked.lock_generation
    assert not again._locker.get_lock_blob().exists()


def test_append_result_unpacks_and_keeps_its_names(example: Example) -> None:
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        cod.append([Instance(str(example.paths[0]))])
        cod.sync()
        other = example.paths[1].parent / "changed.dcm"
        changed = example.datasets[0].copy()
        changed.SeriesDescription = "changed"
        changed.save_as(other, enforce_file_format=True)
        missing = Instance(str(example.paths[0].parent / "missing.dcm"))
        batch = [Instance(str(example.paths[1])), Instance(str(example.paths[0]))]
        result = cod.append([*batch, Instance(str(other)), missing])
        new, same, conflict, errors = result
    assert (new, same, conflict) == ([batch[0]], [batch[1]], [conflict[0]])
    assert (result.new, result.duplicates, result.conflicts) == (new, same, conflict)
    assert (result.same, result.conflict, result.errors) == (same, conflict, errors)
    assert errors[0][0] is missing and "not found" in str(errors[0][1])


def test_get_metadata_dirty_and_clean(example: Example, caplog: pytest.LogCaptureFixture) -> None:
    reader = example.reader()
    with pytest.raises(CleanOpOnUnlockedCODObjectError):
        reader.get_metadata()
    metadata = reader.get_metadata(dirty=True)
    assert (metadata.study_uid, metadata.series_uid, metadata.instances) == (
        example.study_uid,
        example.series_uid,
        {},
    )
    with pytest.raises(CODObjectNotFoundError):
        reader.get_metadata(create_if_missing=False, dirty=True)
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        cod.append([Instance(str(example.paths[0]))])
        assert list(cod.get_metadata().instances) == [example.uids()[0]]
        with caplog.at_level(logging.WARNING):
            cod.get_metadata(dirty=True)
    assert "Performing dirty operation on locked CODObject" in caplog.text


def test_create_if_missing_false_needs_an_existing_series(example: Example) -> None:
    with pytest.raises(CODObjectNotFoundError):
        CODObject(
            example.datastore,
            example.study_uid,
            example.series_uid,
            lock=True,
            create_if_missing=False,
        )
    assert not example.reader()._locker.get_lock_blob().exists()


def test_lock_is_immutable_and_a_broken_lock_is_reported(example: Example) -> None:
    cod = example.reader()
    with pytest.raises(AttributeError):
        cod.lock = True  # type: ignore[misc]
    uids = (example.study_uid, example.series_uid)
    with (
        pytest.raises(LockVerificationError),
        CODObject(example.datastore, *uids, lock=True) as cod,
    ):
        cod._locker.get_lock_blob().delete()
    with (
        pytest.raises(LockVerificationError),
        CODObject(example.datastore, *uids, lock=True) as cod,
    ):
        cod._locker.get_lock_blob().upload_from_string("", content_type="text/plain")


def test_error_log_stops_the_series_until_overridden(example: Example) -> None:
    try:
        with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
            raise RuntimeError("test error")
    except RuntimeError:
        cod.upload_error_log("test error: the series needs attention")
    with fsspec.open(cod.error_log_uri, "rb") as file:
        assert b"test error" in file.read()
    assert cod._locker.get_lock_blob().exists()
    with pytest.raises(ErrorLogExistsError):
        cod.upload_error_log("again")
    cod.release()
    with pytest.raises(ErrorLogExistsError):
        CODObject(example.datastore, example.study_uid, example.series_uid, lock=True)
    assert not cod._locker.get_lock_blob().exists()
    reader = CODObject(example.datastore, example.study_uid, example.series_uid, lock=False)
    assert reader.list_instances() == []  # a reader still reads a series with an error log
    again = CODObject(
        example.datastore, example.study_uid, example.series_uid, lock=True, override_errors=True
    )
    fs, error_log = fsspec.core.url_to_fs(cod.error_log_uri)
    assert not fs.exists(error_log)
    again.release()


def test_instance_accessors(example: Example) -> None:
    path, ds = example.paths[0], example.datasets[0]
    data = path.read_bytes()
    instance = Instance(str(path))
    assert not instance.is_remote and Instance("gs://bucket/x.dcm").is_remote
    assert instance._instance_uid is None
    assert instance.validate() is True
    assert instance.instance_uid() == str(ds.SOPInstanceUID)
    assert instance.series_uid() == example.series_uid
    assert instance.study_uid() == example.study_uid
    assert (instance.size(), instance.crc32c()) == (len(data), checksum(data))
    assert instance.metadata["00080018"]["Value"] == [str(ds.SOPInstanceUID)]
    hinted = Instance(str(path), hints=Hints(size=7, instance_uid="1.2.3"))
    assert hinted.size(trust_hints_if_available=True) == 7
    assert hinted.instance_uid(trust_hints_if_available=True) == "1.2.3"
    params = {"client": FakeStorageClient(), "anon": True}  # smart_open's client is dropped
    assert Instance(str(path), transport_params=params)._storage_options() == {"anon": True}
    fetched = Instance(str(path))
    fetched.fetch()
    path.unlink()  # the bytes were fetched once and kept
    assert fetched.instance_uid() == str(ds.SOPInstanceUID)


@pytest.mark.parametrize(
    ("hints", "message"),
    [
        ({"study_uid": "1.2.3.999"}, "study uid mismatch"),
        ({"series_uid": "1.2.3.999"}, "series uid mismatch"),
        ({"instance_uid": "1.2.3.999"}, "instance uid mismatch"),
        ({"size": 1}, "size mismatch"),
        ({"crc32c": "AAAAAA=="}, "crc32c mismatch"),
    ],
)
def test_wrong_hints_fail_validation_and_append(
    example: Example, hints: dict[str, Any], message: str
) -> None:
    instance = Instance(str(example.paths[0]), hints=Hints(**hints))
    with pytest.raises(AssertionError, match=message):
        instance.validate()
    reader = example.reader()
    new, same, conflict, errors = reader.append(
        [Instance(str(example.paths[0]), hints=Hints(**hints))], dirty=True
    )
    assert (new, same, conflict) == ([], [], [])
    assert message in str(errors[0][1])


def test_size_limits_and_local_origin_deleted_only_after_sync(example: Example) -> None:
    with CODObject(example.datastore, example.study_uid, example.series_uid, lock=True) as cod:
        new, _, _, errors = cod.append(
            [Instance(str(path)) for path in example.paths[:2]],
            max_instance_size=1e-9,
            delete_local_origin=True,
        )
        assert new == [] and "max_instance_size" in str(errors[0][1])
        new, _, _, errors = cod.append(
            [Instance(str(path)) for path in example.paths[:2]], delete_local_origin=True
        )
        assert len(new) == 2 and all(path.exists() for path in example.paths[:2])
        cod.sync()
    assert not any(path.exists() for path in example.paths[:2])
    assert example.reader().get(example.uids()[0])


def test_guards_stay_behind_the_original_names(example: Example) -> None:
    with pytest.raises(InvalidKeyError):
        CODObject(example.datastore, "../../x", example.series_uid, lock=False)
    reader = example.reader()
    _, _, _, errors = reader.append(
        [Instance(str(example.paths[0]), hints=Hints(instance_uid="../../x", crc32c="AAAAAA=="))],
        dirty=True,
    )
    assert "invalid" in str(errors[0][1])


def test_original_module_paths_are_faces_of_dicomflow_cod() -> None:
    import dicomflow.cod as cod
    from dicomflow.cod import appender, cod_object, errors, locker, series_metadata, utils
    from dicomflow.cod.metadata import Document

    assert cod_object.CODObject is cod.CODObject
    assert appender.AppendResult is cod.AppendResult
    assert series_metadata.SeriesMetadata is Document
    assert errors.CODObjectNotFoundError.__mro__[1].__name__ == "CODError"
    assert callable(locker.Locker.get_lock_blob)
    assert utils.is_remote("s3://bucket/x") and not utils.is_remote("/tmp/x")
