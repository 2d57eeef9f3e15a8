"""The node archives every stable series into a cloud-optimized DICOM datastore."""

import io
import subprocess
from pathlib import Path

import pydicom
import pytest
import redis

from dicomflow.cod import CODObject, list_series, list_studies
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.engine.series_archive import ArchiveScheduler, Consumers
from dicomflow.settings import build_settings
from support import storescu, wait_for


def start_node(tmp_path: Path, datastore: Path) -> Node:
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        archive_datastore=str(datastore),
        series_quiet_period_s=0.3,
        queue_workers=1,
    )
    consumer = Consumers(ArchiveScheduler(str(datastore), settings.resolved_queue_url()))
    node = Node(None, settings, consumer)
    node.start()
    return node


def archived(datastore: Path) -> int:
    count = 0
    for study in list_studies(str(datastore)):
        for series in list_series(str(datastore), study):
            cod = CODObject(
                datastore_path=str(datastore), study_uid=study, series_uid=series, lock=False
            )
            count += len(cod.list_instances())
    return count


def test_received_series_are_archived_and_readable(tmp_path: Path) -> None:
    datastore = tmp_path / "archive"
    first = make_ct_series(3, patient_id="A")
    second = make_ct_series(2, patient_id="B")
    node = start_node(tmp_path, datastore)
    try:
        storescu(
            node.port, write_series(first, tmp_path / "a") + write_series(second, tmp_path / "b")
        )
        wait_for(
            lambda: datastore.exists() and archived(datastore) == 5, 60, "5 archived instances"
        )
        storescu(node.port, write_series(first, tmp_path / "a"))  # a re-send: duplicates
        series_dir = tmp_path / "data" / "series" / "rounds"
        wait_for(lambda: not any(series_dir.iterdir()), 60, "the re-sent batch to finish")
    finally:
        node.stop()
    assert archived(datastore) == 5
    assert not any((tmp_path / "data" / "series" / "failed").iterdir())
    original = first[1]
    cod = CODObject(
        datastore_path=str(datastore),
        study_uid=str(original.StudyInstanceUID),
        series_uid=str(original.SeriesInstanceUID),
        lock=False,
    )
    stored = pydicom.dcmread(io.BytesIO(cod.get(str(original.SOPInstanceUID))))
    assert stored.PixelData == original.PixelData
    assert stored.PatientID == "A"
    # each archived series has its thumbnail: an MP4 for several instances
    assert cod.thumbnail["uri"].endswith("thumbnail.mp4")
    frames = cod.thumbnail["thumbnail_index_to_instance_frame"]  # by InstanceNumber
    assert [uid for uid, _ in frames] == [str(ds.SOPInstanceUID) for ds in first]


def test_a_pipeline_can_return_an_archive_output(make_node, tmp_path: Path) -> None:
    from sample_pipelines import MARK, ArchivePipeline

    series = make_ct_series(2)
    node = make_node(ArchivePipeline)
    storescu(node.port, write_series(series, tmp_path / "s"))
    datastore = tmp_path / "data" / "archive"
    wait_for(lambda: datastore.exists() and archived(datastore) == 2, 60, "the archived round")
    cod = CODObject(
        datastore_path=str(datastore),
        study_uid=str(series[0].StudyInstanceUID),
        series_uid=str(series[0].SeriesInstanceUID),
        lock=False,
    )
    stored = pydicom.dcmread(io.BytesIO(cod.get(str(series[0].SOPInstanceUID))))
    assert stored.ImageComments == MARK


def test_an_archive_output_waits_for_a_held_lock_and_is_archived_by_a_retry(
    make_node, tmp_path: Path
) -> None:
    from sample_pipelines import ArchivePipeline

    series = make_ct_series(2)
    datastore = tmp_path / "data" / "archive"
    outbox = tmp_path / "data" / "archive-outbox"
    holder = CODObject(
        datastore_path=str(datastore),
        study_uid=str(series[0].StudyInstanceUID),
        series_uid=str(series[0].SeriesInstanceUID),
        lock=True,
    )
    node = make_node(ArchivePipeline)
    storescu(node.port, write_series(series, tmp_path / "s"))
    wait_for(lambda: node.counters.rounds_succeeded == 1, 60, "the round")
    wait_for(lambda: outbox.is_dir() and any(outbox.iterdir()), 30, "the output to wait")
    assert not archived(datastore)  # the lock is held: the job fails and is retried
    holder.release()
    wait_for(lambda: archived(datastore) == 2, 60, "the output archived by a retry")
    wait_for(lambda: not any(outbox.iterdir()), 30, "the archive outbox to empty")


def test_an_archive_output_whose_job_was_lost_is_archived_after_a_restart(
    make_node, tmp_path: Path
) -> None:
    from sample_pipelines import ArchivePipeline

    datastore = tmp_path / "data" / "archive"
    staged = tmp_path / "data" / "archive-outbox" / "round-000"
    write_series(make_ct_series(3), staged)
    marker = staged.parent / f".{staged.name}.json"
    marker.write_text(f'{{"datastore": "{datastore}"}}')  # moved, then the node died
    make_node(ArchivePipeline)
    wait_for(lambda: datastore.exists() and archived(datastore) == 3, 60, "the lost output")
    wait_for(lambda: not staged.exists(), 30, "the staged folder removed")


def test_services_of_an_archiving_node_read_the_archive(tmp_path: Path, storescp) -> None:
    from dicomflow.queue.backend import open_backend
    from dicomflow.services.consumer import ServiceScheduler
    from dicomflow.services.install import install

    examples = Path(__file__).parents[2] / "examples" / "services"
    root = tmp_path / "services"
    install("measure", examples / "measure", root)
    install("mask", examples / "mask", root)
    datastore = tmp_path / "archive"
    settings = build_settings(
        port=0,
        data_directory=tmp_path / "data",
        endpoints=[storescp.endpoint()],
        services_directory=root,
        archive_datastore=str(datastore),
        series_quiet_period_s=0.3,
        queue_workers=1,
        export_backoff_s=0.1,
    )
    url = settings.resolved_queue_url()
    consumer = Consumers(ServiceScheduler(root, url), ArchiveScheduler(str(datastore), url))
    node = Node(None, settings, consumer)
    node.start()
    try:
        storescu(node.port, write_series(make_ct_series(3), tmp_path / "ct"))
        wait_for(lambda: len(storescp.files()) == 3, 60, "the mask series at storescp")
        rounds = tmp_path / "data" / "series" / "rounds"
        wait_for(lambda: not any(rounds.iterdir()), 30, "the batch to end")
    finally:
        node.stop()
    assert archived(datastore) == 3
    jobs = {job.name: job for job in open_backend(url).jobs()}
    assert jobs["archive"].kwargs["input_dir"]  # the embedded queue's workers share the disk
    assert jobs["mask"].kwargs["archive_input"]["datastore"] == str(datastore)
    assert not list((datastore / "staging").iterdir())  # inputs and results cleaned up


class Unreachable:
    """A consumer whose queue is down."""

    calls = 0

    def schedule(self, *args: object, **kwargs: object) -> None:
        Unreachable.calls += 1
        raise ConnectionError("queue down")


class Refusing:
    """A consumer that refuses the series."""

    def schedule(self, *args: object, **kwargs: object) -> None:
        raise ValueError("no such thing")


def test_a_consumer_that_refuses_is_an_error_of_the_series(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    write_series(make_ct_series(2), folder)
    archive = ArchiveScheduler(str(tmp_path / "archive"), f"sqlite:///{tmp_path / 'q.db'}")
    scheduled = Consumers(Refusing(), archive).schedule(folder, tmp_path / "out", "key")
    assert list(scheduled.job_ids) == ["archive"]
    assert scheduled.errors == {"Refusing": "Not scheduled: no such thing"}


def test_an_unreachable_queue_raises_for_the_series_to_be_scheduled_again(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "batch"
    write_series(make_ct_series(2), folder)
    archive = ArchiveScheduler(str(tmp_path / "archive"), f"sqlite:///{tmp_path / 'q.db'}")
    with pytest.raises(ConnectionError, match="queue down"):
        Consumers(Unreachable(), archive).schedule(folder, tmp_path / "out", "key")

    Unreachable.calls = 0
    down = ArchiveScheduler(str(tmp_path / "archive"), "redis://127.0.0.1:1/0")
    with pytest.raises(redis.exceptions.ConnectionError):
        Consumers(Unreachable(), down).schedule(folder, tmp_path / "out", "key")
    assert Unreachable.calls == 0  # nothing reads an archive that will not be written
    assert not (tmp_path / "archive" / "staging").exists() or not any(
        (tmp_path / "archive" / "staging").iterdir()
    )


def test_an_unparsable_header_value_does_not_block_its_series(tmp_path: Path) -> None:
    """pydicom's badVR.dcm has NumberOfFrames "1A": it is archived as it came, and the
    series metadata names the element it could not convert."""
    from pydicom.data import get_testdata_file

    source = Path(str(get_testdata_file("badVR.dcm")))
    datastore = tmp_path / "archive"
    node = start_node(tmp_path, datastore)
    try:
        storescu(node.port, [source])
        batches = tmp_path / "data" / "series" / "rounds"
        wait_for(lambda: archived(datastore) == 1, 30, "the archived instance")
        wait_for(lambda: not any(batches.iterdir()), 30, "the series batch to finish")
    finally:
        node.stop()
    assert not any((tmp_path / "data" / "series" / "failed").iterdir())
    original = pydicom.dcmread(source)
    cod = CODObject(
        datastore_path=str(datastore),
        study_uid=str(original.StudyInstanceUID),
        series_uid=str(original.SeriesInstanceUID),
        lock=False,
    )
    uid = str(original.SOPInstanceUID)
    assert dataset_bytes(cod.get(uid)) == dataset_bytes(source.read_bytes()), "as it came"
    record = cod.instance_metadata(uid)
    assert list(record["unparsable"]) == ["00280008"]
    assert "'1A'" in record["unparsable"]["00280008"]
    assert record["metadata"]["00280008"] == {"vr": "UN", "InlineBinary": "MUE="}  # b"1A"
    assert record["metadata"]["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "Lastname^Firstname"}],
    }


def dataset_bytes(part10: bytes) -> bytes:
    """A Part-10 file's dataset, after its file meta (which C-STORE does not carry)."""
    return part10[144 + int.from_bytes(part10[140:144], "little") :]


@pytest.mark.filterwarnings("ignore::UserWarning:pydicom")
@pytest.mark.parametrize(
    ("keyword", "value", "reason"),
    [
        ("SeriesInstanceUID", None, "has no SeriesInstanceUID"),
        ("StudyInstanceUID", None, "has no StudyInstanceUID"),
        ("StudyInstanceUID", "", "has no StudyInstanceUID"),
        ("SeriesInstanceUID", "1.2.03", 'SeriesInstanceUID "1.2.03", which is not a valid'),
    ],
)
def test_an_instance_the_archive_cannot_file_is_refused_when_it_arrives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, keyword: str, value: str | None, reason: str
) -> None:
    good = make_ct_series(2, patient_id="A")
    [bad] = make_ct_series(1, patient_id="A")
    if value is None:
        delattr(bad, keyword)
    else:
        setattr(bad, keyword, value)
    datastore = tmp_path / "archive"
    node = start_node(tmp_path, datastore)
    try:
        files = write_series(good, tmp_path / "good") + write_series([bad], tmp_path / "bad")
        command = ["storescu", "-v", "-aec", "DICOMFLOW", "127.0.0.1", str(node.port)]
        result = subprocess.run([*command, *map(str, files)], capture_output=True, text=True)
        wait_for(lambda: archived(datastore) == 2, 30, "the good series archived")
        batches = tmp_path / "data" / "series" / "rounds"
        wait_for(lambda: not any(batches.iterdir()), 30, "the series batch to finish")
    finally:
        node.stop()
    assert result.returncode != 0
    assert "Store Response (Error: DataSetDoesNotMatchSOPClass)" in result.stderr  # 0xA900
    assert result.stderr.count("Store Response (Success)") == 2
    assert node.counters.refused == 1
    assert node.counters.received == 2
    assert reason in caplog.text
    assert not any((tmp_path / "data" / "series" / "failed").iterdir())
    assert not list((tmp_path / "data" / "series" / "spool").rglob("*.dcm")), "nothing kept"
