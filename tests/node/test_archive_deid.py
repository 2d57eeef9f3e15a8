"""A node with ``archive_deid`` archives de-identified instances only.

One node (lean receiver, embedded queue) receives a synthetic CT series with a burned-in
secondary capture slipped into it, and pydicom's CT_small and MR_small, from ``storescu``.
Then every byte under the datastore (tars, metadata, thumbnails, the catalog and its WAL)
is searched for the originals' identifiers; QIDO-RS, WADO-RS and ``findscu`` answer with
pseudonyms; ``dicomflow cod ingest --deid`` with the same key files the same series under
the same paths, another key under others; the refused instance is kept, not lost.

A second node sends the same files through a real Redis queue, whose archive jobs read a
staging prefix of the datastore: while they wait for a worker, no byte under the
datastore holds an original identifier, and once archived the archive is the one the
embedded queue made with the same key.
"""

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from dicomflow.cli.main import app
from dicomflow.cod import CODObject, list_series, list_studies
from dicomflow.dicom.deid import ReidentificationTable, create_key_file
from dicomflow.dicom.deid.reidentification import IdentityKind
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine import series_archive
from dicomflow.engine.archive_deid import ArchiveDeid
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.errors import ArchiveError, DeidConfigError
from dicomflow.queue.backend import PerThreadBackend, open_backend
from dicomflow.queue.job import Job, JobKind, JobStatus
from dicomflow.settings import NodeSettings, build_settings
from dicomflow.web import WebContext, WebServer, create_app
from dicomflow.web.auth import Credentials
from support import RedisServer, StoreSCPPeer, storescu, wait_for

TOKEN = "deid-test-token"
NODE = "DICOMFLOW"
CORPUS = ("CT_small.dcm", "MR_small.dcm")
BURNED_IN = "SC_rgb_rle.dcm"


@dataclass
class DeidArchive:
    """The node after archiving, what it was sent, and its dashboard."""

    root: Path
    node: Node
    settings: NodeSettings
    datastore: Path
    sent: list[Path]
    burned_in: Dataset
    web: WebServer
    moved: StoreSCPPeer

    def get(self, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.get(f"{self.web.url}/dicomweb{path}", headers=headers, timeout=30)


def synthetic_series(folder: Path) -> tuple[list[Path], Dataset]:
    """Three CT slices with every identifier the test looks for, and a secondary capture
    (burned-in annotation by its SOP class) of the same series."""
    series = make_ct_series(3, patient_id="DEIDPAT4711", patient_name="Smithson^Johanna^Quinn")
    for dataset in series:
        dataset.PatientBirthDate = "19610423"
        dataset.AccessionNumber = "ACC998877"
    capture = pydicom.dcmread(get_testdata_file(BURNED_IN))
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(capture, keyword, getattr(series[0], keyword))
    capture.PatientBirthDate = "19610423"
    capture.AccessionNumber = "ACC998877"
    paths = write_series(series, folder)
    capture_path = folder / "capture.dcm"
    capture.save_as(capture_path, enforce_file_format=True)
    return [*paths, capture_path], capture


def corpus_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(str(get_testdata_file(name)), folder / name)) for name in CORPUS]


def deid_settings(root: Path, datastore: Path, key: Path, **more: object) -> NodeSettings:
    defaults: dict[str, object] = {
        "port": 0,
        "data_directory": root / "data",
        "archive_datastore": str(datastore),
        "series_quiet_period_s": 0.3,
        "queue_workers": 1,
        "archive_deid": True,
        "deid_key_file": key,
    }
    return build_settings(**(defaults | more))


def archived_instances(datastore: Path) -> int:
    return sum(
        len(CODObject(str(datastore), study, series, lock=False).list_instances())
        for study in list_studies(str(datastore))
        for series in list_series(str(datastore), study)
    )


def failed_archive_jobs(settings: NodeSettings) -> list[Job]:
    jobs = PerThreadBackend(settings.resolved_queue_url()).get().jobs(JobStatus.FAILED)
    return [job for job in jobs if job.meta.get("kind") == JobKind.ARCHIVE]


@pytest.fixture(scope="module")
def deid_archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeidArchive]:
    root = tmp_path_factory.mktemp("deid-archive")
    key = create_key_file(root / "key")
    datastore = root / "archive"
    table = root / "data" / "deid" / "reidentification.sqlite"
    moved = StoreSCPPeer(root / "moved", ae_title="MOVED")
    settings = deid_settings(
        root,
        datastore,
        key,
        deid_reidentification_table=table,
        move_destinations=[moved.endpoint()],
    )
    synthetic, capture = synthetic_series(root / "synthetic")
    sent = synthetic + corpus_files(root / "corpus")
    scheduler = ArchiveScheduler.from_settings(settings, str(datastore))
    node = Node(None, settings, Consumers(scheduler))
    node.start()
    web = WebServer(create_app(WebContext(settings, Credentials(TOKEN), node)), "127.0.0.1", 0)
    web.start()
    try:
        storescu(node.port, sent)
        wait_for(lambda: archived_instances(datastore) == 5, 120, "5 archived instances")
        # with RETRIES (5) retries left: a refusal is final, so the job fails at once
        wait_for(lambda: failed_archive_jobs(settings), 20, "the refused series' job to fail")
        yield DeidArchive(root, node, settings, datastore, sent, capture, web, moved)
    finally:
        web.stop()
        node.stop()
        moved.stop()


def originals(paths: list[Path]) -> set[bytes]:
    """The identifiers no byte of a de-identified archive may hold."""
    found: set[str] = set()
    for path in paths:
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            found.add(str(dataset[keyword].value))
        for keyword in ("PatientID", "PatientBirthDate", "AccessionNumber"):
            found.add(str(dataset.get(keyword, "") or ""))
        name = str(dataset.get("PatientName", "") or "")
        found.update([*name.replace("=", "^").split("^"), name])
    return {value.encode() for value in found if len(value.strip()) >= 3}


def every_file(folder: Path) -> list[Path]:
    return [Path(d) / name for d, _, names in os.walk(folder) for name in names]


def test_no_byte_of_the_archive_holds_an_original_identifier(deid_archive: DeidArchive) -> None:
    key = (deid_archive.root / "key").read_text().strip()
    forbidden = originals(deid_archive.sent) | {key.encode(), bytes.fromhex(key)}
    files = every_file(deid_archive.datastore)
    kinds = {path.suffix for path in files}
    assert {".tar", ".json", ".sqlite", ".sqlite-wal"} <= kinds, kinds
    assert any(path.name.startswith("thumbnail.") for path in files)
    leaks = [
        (path.name, value)
        for path in files
        for value in forbidden
        if value in path.read_bytes() or value in str(path).encode()
    ]
    assert not leaks
    assert len(forbidden) > 10  # the check looked for something


def test_series_are_filed_under_pseudonyms_with_deid_metadata(deid_archive: DeidArchive) -> None:
    datastore = str(deid_archive.datastore)
    for study in list_studies(datastore):
        for series in list_series(datastore, study):
            cod = CODObject(datastore, study, series, lock=False)
            assert cod.is_deidentified
            assert (cod.deid_study_uid, cod.deid_series_uid) == (study, series)
            assert study.startswith("2.25.") and series.startswith("2.25.")
            for uid in cod.list_instances():
                record = cod.instance_metadata(uid)
                assert uid.startswith("2.25.")
                assert record["original_path"] == f"deidentified/{uid}.dcm"
                assert (
                    f"/studies/{study}/series/{series}.tar://instances/{uid}.dcm" in record["uri"]
                )
                dataset = pydicom.dcmread(io.BytesIO(cod.get(uid)))
                assert dataset.PatientIdentityRemoved == "YES"
                assert dataset.SOPInstanceUID == uid
            if cod.thumbnail is not None:
                frames = cod.thumbnail["thumbnail_index_to_instance_frame"]
                assert {uid for uid, _ in frames} <= set(cod.list_instances())


def test_the_refused_instance_is_kept_and_its_job_failed(deid_archive: DeidArchive) -> None:
    failed_jobs = failed_archive_jobs(deid_archive.settings)
    assert len(failed_jobs) == 1
    assert failed_jobs[0].retries == series_archive.RETRIES > 0
    assert failed_jobs[0].attempts == 1  # not retried: it would be refused again
    errors = [str(job.error) for job in failed_jobs]
    assert "ArchiveRefusedError" in errors[0] and "not retried" in errors[0]
    assert "refused by de-identification" in errors[0]
    assert "Secondary Capture" in errors[0]
    assert "Smithson" not in errors[0] and "DEIDPAT4711" not in errors[0]
    uid = str(deid_archive.burned_in.SOPInstanceUID)
    failed = deid_archive.root / "data" / "series" / "failed"

    def kept() -> list[Path]:
        return [path for path in every_file(failed) if path.suffix == ".dcm"]

    wait_for(lambda: len(kept()) == 4, 30, "the failed series' inputs to be kept")
    kept_uids = {
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in kept()
    }
    assert uid in kept_uids
    assert len(kept_uids) == 4  # the whole series' inputs, as for any failed job


def test_qido_and_wado_answer_with_pseudonyms(deid_archive: DeidArchive) -> None:
    forbidden = originals(deid_archive.sent)
    answer = deid_archive.get("/instances")
    assert answer.status_code == 200
    instances = answer.json()
    assert len(instances) == 5
    assert not [value for value in forbidden if value in answer.content]
    first = instances[0]
    study, series, sop = (first[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018"))
    assert {study[:5], series[:5], sop[:5]} == {"2.25."}
    metadata = deid_archive.get(f"/studies/{study}/series/{series}/metadata")
    assert metadata.status_code == 200
    assert not [value for value in forbidden if value in metadata.content]
    assert deid_archive.get(f"/studies/{study}/series/{series}/instances/{sop}").status_code == 200


def test_findscu_answers_with_pseudonyms(deid_archive: DeidArchive, tmp_path: Path) -> None:
    forbidden = originals(deid_archive.sent)
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientID", "PatientName"]
    keys += ["AccessionNumber", "PatientBirthDate"]
    command = ["findscu", "-S", "-X", "-od", str(tmp_path), "-aec", NODE, "127.0.0.1"]
    command += [str(deid_archive.node.port)] + [arg for key in keys for arg in ("-k", key)]
    subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    answers = sorted(tmp_path.glob("rsp*.dcm"))
    assert len(answers) >= 2
    for path in answers:
        assert not [value for value in forbidden if value in path.read_bytes()]
        assert str(pydicom.dcmread(path).StudyInstanceUID).startswith("2.25.")


def test_the_reidentification_table_maps_the_pseudonyms_back(deid_archive: DeidArchive) -> None:
    table = ReidentificationTable(deid_archive.root / "data" / "deid" / "reidentification.sqlite")
    original = pydicom.dcmread(deid_archive.sent[0], stop_before_pixels=True)
    datastore = str(deid_archive.datastore)
    found = {
        (entry.kind, entry.original)
        for study in list_studies(datastore)
        for series in list_series(datastore, study)
        for uid in (study, series)
        for entry in table.lookup(uid)
    }
    assert (IdentityKind.STUDY, str(original.StudyInstanceUID)) in found
    assert (IdentityKind.SERIES, str(original.SeriesInstanceUID)) in found
    reader = CODObject(datastore, *found_series(deid_archive, original), lock=False)
    patient = reader.instance_metadata(reader.list_instances()[0])["metadata"]["00100020"]
    entries = table.lookup(patient["Value"][0])
    assert [(e.kind, e.original) for e in entries] == [(IdentityKind.PATIENT, "DEIDPAT4711")]
    table.close()


def found_series(deid_archive: DeidArchive, original: Dataset) -> tuple[str, str]:
    identity = ArchiveDeid.from_settings(deid_archive.settings).deidentifier().identity(original)
    return identity.study_uid, identity.series_uid


def test_a_pipelines_archive_output_is_deidentified(make_node: Any, tmp_path: Path) -> None:
    from sample_pipelines import ArchivePipeline

    key = create_key_file(tmp_path / "key")
    series = make_ct_series(2, patient_id="OUTPUT0815")
    node = make_node(ArchivePipeline, archive_deid=True, deid_key_file=key)
    storescu(node.port, write_series(series, tmp_path / "s"))
    datastore = tmp_path / "data" / "archive"
    wait_for(lambda: datastore.exists() and archived_instances(datastore) == 2, 60, "the output")
    assert list_studies(str(datastore)) != [str(series[0].StudyInstanceUID)]
    forbidden = [b"OUTPUT0815", str(series[0].StudyInstanceUID).encode()]
    assert not [v for v in forbidden for p in every_file(datastore) if v in p.read_bytes()]


def test_services_are_told_the_pseudonymous_series(deid_archive: DeidArchive) -> None:
    scheduler = ArchiveScheduler.from_settings(deid_archive.settings, str(deid_archive.datastore))
    folder = deid_archive.root / "synthetic"
    archived = scheduler.archived(folder)
    assert archived is not None
    reader = CODObject(
        str(deid_archive.datastore), archived.study_uid, archived.series_uid, lock=False
    )
    assert sorted(archived.sop_instance_uids) == reader.list_instances()  # the capture left out
    assert len(archived.sop_instance_uids) == 3


def test_the_key_is_never_in_a_job(deid_archive: DeidArchive) -> None:
    key = (deid_archive.root / "key").read_text().strip()
    jobs = PerThreadBackend(deid_archive.settings.resolved_queue_url()).get().jobs()
    archive_jobs = [job for job in jobs if job.meta.get("kind") == JobKind.ARCHIVE]
    assert len(archive_jobs) == 3
    for job in archive_jobs:
        assert job.kwargs["deid"]["key_file"] == str(deid_archive.root / "key")
        assert key not in json.dumps([job.kwargs, job.meta, job.result, job.error])


def test_movescu_sends_deidentified_instances(deid_archive: DeidArchive) -> None:
    study = list_studies(str(deid_archive.datastore))[0]
    command = ["movescu", "-S", "-aem", "MOVED", "-aec", NODE, "127.0.0.1"]
    command += [str(deid_archive.node.port), "-k", "QueryRetrieveLevel=STUDY"]
    command += ["-k", f"StudyInstanceUID={study}"]
    subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    wait_for(lambda: deid_archive.moved.files(), 30, "the moved instances")
    forbidden = originals(deid_archive.sent)
    for path in deid_archive.moved.files():
        assert not [value for value in forbidden if value in path.read_bytes()]
        assert str(pydicom.dcmread(path).StudyInstanceUID) == study


def series_paths(datastore: Path) -> set[str]:
    """The archive's files (catalog aside), relative to its root."""
    files = every_file(datastore)
    return {str(p.relative_to(datastore)) for p in files if not p.name.startswith("catalog")}


def ingest(datastore: Path, key: Path, files: list[Path], *options: str) -> str:
    arguments = ["cod", "ingest", *map(str, files), "-d", str(datastore), "--workers", "1"]
    arguments += ["--deid", "--deid-key-file", str(key), *options]
    result = CliRunner().invoke(app, arguments)
    return f"{result.exit_code}\n{result.output}"


def test_ingest_with_the_same_key_files_the_same_series(
    deid_archive: DeidArchive, tmp_path: Path
) -> None:
    node_paths = {p for p in series_paths(deid_archive.datastore) if "thumbnail" not in p}
    same = tmp_path / "same"
    report = ingest(same, deid_archive.root / "key", deid_archive.sent)
    assert report.startswith("1\n") and "not archived" in report  # the secondary capture
    assert "3 series: 5 new" in report
    assert {p for p in series_paths(same) if "thumbnail" not in p} == node_paths
    other = tmp_path / "other"
    report = ingest(other, create_key_file(tmp_path / "other-key"), deid_archive.sent)
    assert "5 new" in report
    other_paths = series_paths(other)
    assert len(other_paths) == len({p for p in node_paths if "thumbnail" not in p})
    assert not other_paths & node_paths
    forbidden = originals(deid_archive.sent)
    assert not [v for v in forbidden for p in every_file(same) if v in p.read_bytes()]


def test_a_key_file_others_can_read_stops_the_start_and_the_ingest(tmp_path: Path) -> None:
    key = create_key_file(tmp_path / "key")
    key.chmod(0o644)
    settings = deid_settings(tmp_path, tmp_path / "archive", key)
    with pytest.raises(DeidConfigError, match="deid_key_file"):
        ArchiveScheduler.from_settings(settings, str(tmp_path / "archive"))
    with pytest.raises(DeidConfigError, match="deid_key_file"):
        Node(None, settings, None)
    files = corpus_files(tmp_path / "corpus")
    report = ingest(tmp_path / "ingested", key, files)
    assert report.startswith("2\n") and "deid_key_file" in report
    assert not (tmp_path / "ingested").exists()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--deid-options", "retain_everything"), "deid_options"),
        (("--deid-profile", "../etc"), "deid_profile"),
        (("--deid-safe-private", "\0,zz"), "deid_safe_private"),
    ],
)
def test_ingest_names_a_wrong_deid_option(
    tmp_path: Path, options: tuple[str, str], named: str
) -> None:
    key = create_key_file(tmp_path / "key")
    report = ingest(tmp_path / "ingested", key, corpus_files(tmp_path / "corpus"), *options)
    assert report.startswith("2\n") and named in report, report
    assert "Traceback" not in report


@pytest.mark.parametrize(
    "malformed", [None, [], {}, {"profile": "basic"}, {"options": "x", "unknown": 1}]
)
def test_malformed_job_settings_are_named(malformed: object) -> None:
    with pytest.raises(DeidConfigError, match="archive_deid"):
        ArchiveDeid.from_kwargs(malformed)


def test_job_settings_round_trip(tmp_path: Path) -> None:
    settings = deid_settings(tmp_path, tmp_path / "archive", tmp_path / "key")
    deid = ArchiveDeid.from_settings(
        settings.model_copy(update={"deid_options": ["clean_descriptors"]})
    )
    assert ArchiveDeid.from_kwargs(json.loads(json.dumps(deid.to_kwargs()))) == deid
    assert deid.settings().deid_key_path() == tmp_path / "key"


@dataclass
class RedisDeidArchive:
    """A node on a Redis queue, after archiving what ``deid_archive`` was sent, and the
    datastore's files while its archive jobs waited for a worker."""

    root: Path
    settings: NodeSettings
    datastore: Path
    held: dict[Path, bytes]


def archive_jobs(settings: NodeSettings, status: JobStatus | None = None) -> list[Any]:
    jobs = PerThreadBackend(settings.resolved_queue_url()).get().jobs(status)
    return [job for job in jobs if job.meta.get("kind") == JobKind.ARCHIVE]


@pytest.fixture(scope="module")
def redis_deid_archive(
    deid_archive: DeidArchive, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisDeidArchive]:
    root = tmp_path_factory.mktemp("deid-redis")
    redis = RedisServer(root / "redis")
    datastore = root / "archive"
    key = deid_archive.root / "key"
    settings = deid_settings(root, datastore, key, queue_url=redis.url(), queue_workers=0)
    node = Node(None, settings, Consumers(ArchiveScheduler.from_settings(settings, str(datastore))))
    node.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(series_archive, "RETRIES", 0)  # a refusal is final: fail at once
            storescu(node.port, deid_archive.sent)
            queued = lambda: len(archive_jobs(settings, JobStatus.QUEUED)) == 3  # noqa: E731
            wait_for(queued, 60, "three archive jobs waiting for a worker")
            held = {path: path.read_bytes() for path in every_file(datastore)}
            open_backend(settings.resolved_queue_url()).worker(name="deid").work(burst=True)
            wait_for(lambda: archive_jobs(settings, JobStatus.FAILED), 60, "the refused job")
            failed = root / "data" / "series" / "failed"
            kept = lambda: [p for p in every_file(failed) if p.suffix == ".dcm"]  # noqa: E731
            wait_for(lambda: len(kept()) == 4, 30, "the failed series' inputs to be kept")
        yield RedisDeidArchive(root, settings, datastore, held)
    finally:
        node.stop()
        redis.stop()


def test_a_waiting_job_leaves_no_original_byte_in_the_datastore(
    deid_archive: DeidArchive, redis_deid_archive: RedisDeidArchive
) -> None:
    held = redis_deid_archive.held
    forbidden = originals(deid_archive.sent)
    staged = [data for path, data in held.items() if "/staging/" in str(path)]
    assert len(staged) == 5  # the secondary capture not among them
    leaks = [
        (path.name, value)
        for path, data in held.items()
        for value in forbidden
        if value in data or value in str(path).encode()
    ]
    assert not leaks
    for data in staged:
        assert pydicom.dcmread(io.BytesIO(data)).PatientIdentityRemoved == "YES"
    for job in archive_jobs(redis_deid_archive.settings):
        assert job.kwargs["input_deidentified"] is True
        assert not [v for v in forbidden if v in json.dumps(job.kwargs).encode()]


def test_the_redis_archive_is_the_embedded_one(
    deid_archive: DeidArchive, redis_deid_archive: RedisDeidArchive
) -> None:
    embedded, redis = deid_archive.datastore, redis_deid_archive.datastore
    archived = {p for p in series_paths(redis) if not p.startswith("staging/")}
    assert archived == series_paths(embedded)
    for study in list_studies(str(embedded)):
        for series in list_series(str(embedded), study):
            expected = CODObject(str(embedded), study, series, lock=False)
            found = CODObject(str(redis), study, series, lock=False)
            assert found.is_deidentified
            assert found.list_instances() == expected.list_instances()
            for uid in expected.list_instances():  # not de-identified twice: the same bytes
                assert found.get(uid) == expected.get(uid)
                assert found.instance_metadata(uid)["original_path"] == f"deidentified/{uid}.dcm"
    forbidden = originals(deid_archive.sent)
    assert not [v for v in forbidden for p in every_file(redis) if v in p.read_bytes()]


def test_the_refusal_on_redis_fails_the_job_as_on_the_embedded_queue(
    deid_archive: DeidArchive, redis_deid_archive: RedisDeidArchive
) -> None:
    errors = [str(job.error) for job in archive_jobs(redis_deid_archive.settings, JobStatus.FAILED)]
    assert len(errors) == 1
    assert "1 instance(s)" in errors[0] and "refused by de-identification" in errors[0]
    assert "Secondary Capture" in errors[0]
    assert "Smithson" not in errors[0] and "DEIDPAT4711" not in errors[0]
    failed = redis_deid_archive.root / "data" / "series" / "failed"
    kept = {
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        for path in every_file(failed)
        if path.suffix == ".dcm"
    }
    assert str(deid_archive.burned_in.SOPInstanceUID) in kept and len(kept) == 4


def test_a_staged_input_that_is_not_deidentified_is_not_archived(tmp_path: Path) -> None:
    settings = deid_settings(tmp_path, tmp_path / "archive", create_key_file(tmp_path / "key"))
    staged = tmp_path / "staging" / "input"
    corpus_files(staged)
    deid = ArchiveDeid.from_settings(settings).to_kwargs()
    with pytest.raises(ArchiveError, match=r"2 instance\(s\).*staged as de-identified, but"):
        series_archive.archive_series(
            None,
            str(tmp_path / "archive"),
            input_url=str(staged),
            deid=deid,
            input_deidentified=True,
            refused=[],
        )
    assert archived_instances(tmp_path / "archive") == 0
    assert len(list(staged.glob("*.dcm"))) == 2  # the inputs are kept
