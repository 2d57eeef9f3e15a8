"""The spool journal: an instance is durable once appended, written into the spool
behind, and written again after a crash wherever the spool lost it."""

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from sample_pipelines import RELEASE, HoldingPipeline

from dicomflow import durable, metrics
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import value_key
from dicomflow.engine import journal as journal_module
from dicomflow.engine.journal import DATA_START, SLOT_SIZE, Journal
from dicomflow.engine.spool import Spool
from dicomflow.errors import SpoolError
from dicomflow.net.storage import OUT_OF_RESOURCES as STATUS_OUT_OF_RESOURCES
from support import fill_filesystem, small_filesystem, storescu, wait_for

PATIENT = value_key("PAT-1")
SERIES = value_key("1.2.3.4")
NEVER = 3600.0  # a checkpoint interval that never comes during a test


def make(root: Path, **options: object) -> tuple[Journal, Spool, Spool]:
    options.setdefault("max_instance_bytes", 64 * 1024)
    options.setdefault("interval_s", NEVER)
    journal = Journal(root / "journal", **options)  # type: ignore[arg-type]
    spool = Spool(root / "spool", journal=journal, journal_name="pipeline")
    series = Spool(root / "series" / "spool", journal=journal, journal_name="series")
    journal.open([spool, series])
    return journal, spool, series


def crash(journal: Journal) -> None:
    """Stop as a killed process does: no last checkpoint, nothing more written."""
    journal._stopping = True
    journal._wake.set()
    if journal._thread is not None:
        journal._thread.join()
    os.close(journal._fd)
    journal._fd = -1


def instance(number: int, size: int = 3000) -> bytes:
    return number.to_bytes(4, "big") * (size // 4)


def spooled(spool: Spool) -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for _key, path in spool.instances()}


def sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def test_an_instance_is_in_the_spool_once_settled(tmp_path: Path):
    journal, spool, _ = make(tmp_path)
    pending = sample("dicomflow_spool_journal_pending_bytes")
    checkpoints = sample("dicomflow_spool_journal_checkpoint_seconds_count")
    path = spool.store(PATIENT, "1.2.1", instance(1))
    assert path == spool.path_for(PATIENT, "1.2.1")
    assert sample("dicomflow_spool_journal_pending_bytes") == pending + len(instance(1))
    spool.settle()
    assert sample("dicomflow_spool_journal_pending_bytes") == pending
    assert sample("dicomflow_spool_journal_checkpoint_seconds_count") == checkpoints + 1
    assert path.read_bytes() == instance(1)
    assert not list(spool.tmp.iterdir())
    journal.close()


def test_the_checkpointer_writes_instances_without_being_asked(tmp_path: Path):
    journal, spool, _ = make(tmp_path, interval_s=0.02)
    path = spool.store(PATIENT, "1.2.1", instance(1))
    deadline = 200
    while not path.exists() and deadline:
        threading.Event().wait(0.01)
        deadline -= 1
    assert path.read_bytes() == instance(1)
    journal.close()


def test_the_checkpointer_waits_while_instances_keep_coming(tmp_path: Path):
    """A burst is written once while it arrives; the copies into the spool follow
    when the sender pauses."""
    journal, spool, _ = make(tmp_path, interval_s=1.0, max_delay_s=NEVER)
    paths = [spool.store(PATIENT, f"1.2.{n}", instance(n)) for n in range(20)]
    assert not any(path.exists() for path in paths)  # less than a second ago: waiting
    wait_for(lambda: all(path.exists() for path in paths), what="the checkpoint after the pause")
    assert spooled(spool) == {f"1.2.{n}": instance(n) for n in range(20)}
    journal.close()


def test_an_instance_waits_at_most_max_delay_while_appends_go_on(tmp_path: Path):
    journal, spool, _ = make(tmp_path, interval_s=0.5, max_delay_s=0.2)
    first = spool.store(PATIENT, "1.2.0", instance(0))
    number = 1
    while not first.exists() and number < 2000:  # never a pause of 0.5 s
        spool.store(PATIENT, f"1.2.{number}", instance(number))
        threading.Event().wait(0.005)
        number += 1
    assert first.read_bytes() == instance(0)
    assert number < 2000
    journal.close()


def test_half_a_segment_waiting_starts_a_checkpoint(tmp_path: Path):
    segment = DATA_START + 256 * 1024
    journal, spool, _ = make(
        tmp_path, segment_bytes=segment, max_instance_bytes=8 * 1024, max_delay_s=NEVER
    )
    paths = [spool.store(PATIENT, f"1.2.{n}", instance(n)) for n in range(50)]  # 150 kB
    assert journal._generation == 1  # no wrap was needed
    wait_for(lambda: paths[0].exists(), what="the checkpoint at half the segment")
    journal.close()


def test_a_segment_of_another_size_is_replayed_then_made_again(tmp_path: Path):
    journal, spool, _ = make(tmp_path, segment_bytes=DATA_START + 64 * 1024)
    spool.store(PATIENT, "1.2.1", instance(1))
    crash(journal)
    segment = tmp_path / "journal" / "segment.journal"

    again, spool2, _ = make(tmp_path, segment_bytes=DATA_START + 128 * 1024)
    assert spooled(spool2) == {"1.2.1": instance(1)}
    assert segment.stat().st_size == DATA_START + 128 * 1024
    spool2.store(PATIENT, "1.2.2", instance(2))
    crash(again)

    third, spool3, _ = make(tmp_path, segment_bytes=DATA_START + 128 * 1024)
    assert spooled(spool3) == {"1.2.1": instance(1), "1.2.2": instance(2)}
    third.close()


def test_after_a_crash_every_instance_the_spool_lost_is_written_again(tmp_path: Path):
    journal, spool, _ = make(tmp_path)
    uids = [f"1.2.{n}" for n in range(20)]
    for number, uid in enumerate(uids):
        spool.store(PATIENT, uid, instance(number))
    spool.settle()  # placed, and the checkpoint covers them ...
    for number, uid in enumerate(uids[:10], start=100):  # ... then ten newer copies
        spool.store(PATIENT, uid, instance(number))
    spool.store(PATIENT, "1.2.99", instance(99))
    spool.store(PATIENT, "1.2.98", instance(98))
    journal.checkpoint = lambda **_: None  # type: ignore[method-assign]
    journal._place(journal._queue[-1])  # placed, and the machine dies before its flush
    crash(journal)
    # The machine lost what was not flushed: files missing, cut short, zeroed.
    spool.path_for(PATIENT, "1.2.0").unlink()
    spool.path_for(PATIENT, "1.2.1").write_bytes(instance(1)[:100])
    spool.path_for(PATIENT, "1.2.98").write_bytes(bytes(len(instance(98))))

    replayed = sample("dicomflow_spool_journal_replayed_total")
    again, spool2, _ = make(tmp_path)
    # Written again: the lost, the cut and the zeroed file, and the ten newer copies.
    assert sample("dicomflow_spool_journal_replayed_total") == replayed + 12
    expected = {uid: instance(100 + n) for n, uid in enumerate(uids[:10])}
    expected |= {uid: instance(n) for n, uid in enumerate(uids) if n >= 10}
    expected["1.2.99"] = instance(99)
    expected["1.2.98"] = instance(98)
    assert spooled(spool2) == expected
    again.close()


def test_instances_a_checkpoint_covered_are_not_written_back(tmp_path: Path):
    """A round moves instances out after a checkpoint: a crash must not bring them back."""
    journal, spool, _ = make(tmp_path)
    spool.store(PATIENT, "1.2.1", instance(1))
    spool.settle()
    spool.path_for(PATIENT, "1.2.1").rename(tmp_path / "taken-by-a-round.dcm")
    spool.store(PATIENT, "1.2.2", instance(2))
    crash(journal)

    again, spool2, _ = make(tmp_path)
    assert spooled(spool2) == {"1.2.2": instance(2)}
    again.close()


def test_a_torn_last_record_ends_the_replay_and_loses_nothing_before_it(tmp_path: Path):
    journal, spool, _ = make(tmp_path)
    for number in range(3):
        spool.store(PATIENT, f"1.2.{number}", instance(number))
    offset = journal._offset
    crash(journal)
    with open(tmp_path / "journal" / "segment.journal", "r+b") as segment:
        segment.seek(offset)
        segment.write(b"DFJR" + b"\x07" * 40)  # a record header whose payload never came

    again, spool2, _ = make(tmp_path)
    assert spooled(spool2) == {f"1.2.{n}": instance(n) for n in range(3)}
    again.close()


def test_a_corrupted_record_stops_the_replay_there(tmp_path: Path):
    journal, spool, _ = make(tmp_path)
    spool.store(PATIENT, "1.2.0", instance(0))
    second = journal._offset
    spool.store(PATIENT, "1.2.1", instance(1))
    crash(journal)
    with open(tmp_path / "journal" / "segment.journal", "r+b") as segment:
        segment.seek(second + 100)
        segment.write(b"\xff")  # one bit of the second record's payload flipped

    again, spool2, _ = make(tmp_path)
    assert spooled(spool2) == {"1.2.0": instance(0)}
    again.close()


def test_a_torn_header_falls_back_to_the_other_slot(tmp_path: Path):
    journal, spool, _ = make(tmp_path)
    spool.store(PATIENT, "1.2.0", instance(0))
    spool.settle()
    spool.store(PATIENT, "1.2.1", instance(1))
    spool.settle()  # the newest header now covers both
    newest = journal._sequence % 2
    crash(journal)
    with open(tmp_path / "journal" / "segment.journal", "r+b") as segment:
        segment.seek(newest * SLOT_SIZE + 4)
        segment.write(b"\xff\xff\xff")  # its sequence torn: the CRC no longer matches
    spool.path_for(PATIENT, "1.2.1").unlink()  # as if its flush had been lost too

    again, spool2, _ = make(tmp_path)
    # The older header covers only the first instance: the second is written again.
    assert spooled(spool2) == {"1.2.0": instance(0), "1.2.1": instance(1)}
    again.close()


def test_a_full_segment_wraps_to_a_new_generation(tmp_path: Path):
    segment = DATA_START + 64 * 1024
    journal, spool, _ = make(tmp_path, segment_bytes=segment, max_instance_bytes=8 * 1024)
    for number in range(100):  # about 300 kB through a 64 kB segment
        spool.store(PATIENT, f"1.2.{number}", instance(number))
    generation = journal._generation
    assert generation > 1
    crash(journal)
    for path in spool.incoming.rglob("*.dcm"):
        path.unlink()

    again, spool2, _ = make(tmp_path, segment_bytes=segment, max_instance_bytes=8 * 1024)
    # Only the records after the last checkpoint come back, none of an older generation.
    restored = spooled(spool2)
    assert restored
    assert restored == {uid: instance(int(uid.split(".")[-1])) for uid in restored}
    assert set(restored) <= {f"1.2.{n}" for n in range(100)}
    assert "1.2.99" in restored
    assert "1.2.0" not in restored
    again.close()


def test_a_large_instance_is_stored_the_classic_way_at_once(tmp_path: Path):
    journal, spool, _ = make(tmp_path, max_instance_bytes=1000)
    path = spool.store(PATIENT, "1.2.1", instance(1, 4000))
    assert path.read_bytes() == instance(1, 4000)  # no settle needed
    journal.close()


def test_a_classic_copy_is_not_overwritten_by_an_older_journaled_one(tmp_path: Path):
    journal, spool, _ = make(tmp_path, max_instance_bytes=1000)
    spool.store(PATIENT, "1.2.1", instance(1, 800))  # journaled
    spool.store(PATIENT, "1.2.1", instance(2, 4000))  # the same UID again, classic
    spool.settle()
    crash(journal)

    again, spool2, _ = make(tmp_path, max_instance_bytes=1000)
    assert spooled(spool2) == {"1.2.1": instance(2, 4000)}
    again.close()


def test_links_into_a_second_spool_are_journaled_and_replayed(tmp_path: Path):
    journal, spool, series = make(tmp_path)
    spool.store(PATIENT, "1.2.1", instance(1), links=[(series, SERIES)])
    spool.settle()
    first, linked = spool.path_for(PATIENT, "1.2.1"), series.path_for(SERIES, "1.2.1")
    assert first.stat().st_ino == linked.stat().st_ino
    spool.store(PATIENT, "1.2.2", instance(2), links=[(series, SERIES)])
    crash(journal)
    for path in (spool.path_for(PATIENT, "1.2.2"), series.path_for(SERIES, "1.2.2")):
        path.unlink(missing_ok=True)

    again, spool2, series2 = make(tmp_path)
    assert spooled(spool2) == {"1.2.1": instance(1), "1.2.2": instance(2)}
    assert spooled(series2) == {"1.2.1": instance(1), "1.2.2": instance(2)}
    again.close()


def test_a_spool_that_cannot_be_written_refuses_new_instances_until_it_can(tmp_path: Path):
    journal, spool, _ = make(tmp_path)
    blocker = spool.incoming / PATIENT
    blocker.write_bytes(b"a file where the patient's directory must go")
    spool.store(PATIENT, "1.2.1", instance(1))  # durable in the journal
    with pytest.raises(SpoolError, match="cannot be written"):
        spool.settle()
    with pytest.raises(SpoolError, match="cannot be written"):
        spool.store(PATIENT, "1.2.2", instance(2))

    blocker.unlink()
    spool.settle()
    spool.store(PATIENT, "1.2.3", instance(3))
    spool.settle()
    assert spooled(spool) == {"1.2.1": instance(1), "1.2.3": instance(3)}
    journal.close()


def test_concurrent_writers_all_reach_the_spool(tmp_path: Path):
    journal, spool, _ = make(tmp_path, interval_s=0.01)

    def write(worker: int) -> None:
        for number in range(50):
            spool.store(value_key(f"P{worker}"), f"1.{worker}.{number}", instance(number))

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spool.settle()
    assert len(spooled(spool)) == 200
    journal.close()


@pytest.mark.parametrize("syncfs", [True, False])
def test_a_few_files_are_flushed_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool
):
    if not syncfs:
        monkeypatch.setattr(durable, "_syncfs", None)
    flushed: list[Path] = []
    real = durable.fsync_if_there
    monkeypatch.setattr(durable, "fsync_if_there", lambda path: (flushed.append(path), real(path)))
    journal, spool, _ = make(tmp_path)
    path = spool.store(PATIENT, "1.2.1", instance(1))
    spool.settle()
    assert flushed[:3] == [path, path.parent, path.parent.parent]
    journal.close()


def test_a_large_batch_is_flushed_with_one_syncfs_per_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    if durable._syncfs is None:
        pytest.skip("the C library has no syncfs")
    calls: list[int] = []
    real = durable._syncfs
    monkeypatch.setattr(durable, "_syncfs", lambda fd: (calls.append(fd), real(fd))[1])
    monkeypatch.setattr(durable, "fsync_if_there", lambda path: pytest.fail(f"fsync of {path}"))
    journal, spool, _ = make(tmp_path)
    for number in range(journal_module.SYNCFS_FROM_FILES):
        spool.store(PATIENT, f"1.2.{number}", instance(number))
    spool.settle()
    assert len(calls) == 1  # both spools are on the same filesystem
    assert len(spooled(spool)) == journal_module.SYNCFS_FROM_FILES
    journal.close()


def test_an_unreadable_segment_header_is_a_clear_error(tmp_path: Path):
    journal, _spool, _ = make(tmp_path)
    journal.close()
    with open(tmp_path / "journal" / "segment.journal", "r+b") as segment:
        segment.write(bytes(2 * SLOT_SIZE))
    with pytest.raises(SpoolError, match="no valid header"):
        make(tmp_path)


# -- in the node -------------------------------------------------------------------


def test_a_node_acknowledges_through_the_journal_and_stop_writes_everything(
    make_node, tmp_path: Path
):
    node = make_node(HoldingPipeline)
    assert node.journal is not None and node.journal.is_open
    files = write_series(make_ct_series(5, rows=16, columns=16), tmp_path / "series")
    storescu(node.port, files)
    assert node.counters.received == 5
    node.stop()  # the last checkpoint writes whatever the checkpointer had not
    assert not node.journal.is_open
    incoming = tmp_path / "data" / "spool" / "incoming"
    assert len(list(incoming.rglob("*.dcm"))) == 5


def test_a_node_without_the_journal_stores_each_instance_before_its_success(
    make_node, tmp_path: Path
):
    node = make_node(HoldingPipeline, spool_journal_max_bytes=0)
    assert node.journal is None
    files = write_series(make_ct_series(3, rows=16, columns=16), tmp_path / "series")
    storescu(node.port, files)
    incoming = tmp_path / "data" / "spool" / "incoming"
    assert len(list(incoming.rglob("*.dcm"))) == 3  # no settle needed


def test_a_restarted_node_processes_instances_only_its_journal_kept(make_node, tmp_path: Path):
    """The spool lost every instance (as a machine crash can lose unflushed files):
    the journal writes them back and the round runs after the restart."""
    data = tmp_path / "data"
    node = make_node(HoldingPipeline)
    assert node.journal is not None
    node.journal.checkpoint = lambda **_: None  # type: ignore[method-assign]
    series = make_ct_series(4, rows=16, columns=16, patient_id="JOURNAL")
    storescu(node.port, write_series(series, tmp_path / "series"))
    assert node.counters.received == 4
    crash(node.journal)  # die without a last checkpoint
    node.stop()
    shutil.rmtree(data / "spool" / "incoming")

    again = make_node(HoldingPipeline)
    release = make_ct_series(1, rows=16, columns=16, patient_id="JOURNAL")
    release[0].ImageComments = RELEASE
    storescu(again.port, write_series(release, tmp_path / "release"))
    seen = tmp_path / "records" / "rounds-seen"
    wait_for(lambda: seen.is_dir() and any(seen.iterdir()), what="the round")
    [record] = [json.loads(path.read_text()) for path in seen.iterdir()]
    assert record["uids"] == sorted(str(ds.SOPInstanceUID) for ds in series + release)


def c_store_status(port: int, dataset: Dataset) -> int:
    ae = AE(ae_title="JOURNALTEST")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", port, ae_title="DICOMFLOW")
    assert association.is_established
    try:
        status = association.send_c_store(dataset)
        return int(status.Status)
    finally:
        association.release()


def test_a_node_whose_spool_cannot_be_written_refuses_until_it_can(make_node, tmp_path: Path):
    node = make_node(HoldingPipeline)
    assert node.journal is not None
    blocker = node.spool.incoming / value_key("BLOCKED")
    blocker.write_bytes(b"a file where the patient's directory must go")
    held = make_ct_series(3, rows=16, columns=16, patient_id="BLOCKED")
    assert c_store_status(node.port, held[0]) == 0x0000  # durable in the journal
    wait_for(lambda: node.journal is not None and node.journal._broken is not None)
    assert sample("dicomflow_spool_writable") == 0
    status = node.journal.status()
    assert not status["writable"] and "File exists" in status["problem"]
    assert status["pending_bytes"] > 0
    assert c_store_status(node.port, held[1]) == STATUS_OUT_OF_RESOURCES

    blocker.unlink()
    wait_for(lambda: node.journal is not None and node.journal._broken is None)
    assert sample("dicomflow_spool_writable") == 1
    assert c_store_status(node.port, held[2]) == 0x0000
    held[0].ImageComments = RELEASE  # sent again, now as the release
    assert c_store_status(node.port, held[0]) == 0x0000
    seen = tmp_path / "records" / "rounds-seen"
    wait_for(lambda: seen.is_dir() and any(seen.iterdir()), what="the round")
    [record] = [json.loads(path.read_text()) for path in seen.iterdir()]
    assert record["uids"] == sorted(str(held[n].SOPInstanceUID) for n in (0, 2))


def test_a_failed_journal_flush_refuses_every_later_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    journal, spool, _ = make(tmp_path)
    spool.store(PATIENT, "1.2.1", instance(1))

    def failing(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_module.os, "fdatasync", failing)
    with pytest.raises(SpoolError, match="Cannot flush"):
        spool.store(PATIENT, "1.2.2", instance(2))
    monkeypatch.undo()
    with pytest.raises(SpoolError, match="cannot be used"):
        spool.store(PATIENT, "1.2.3", instance(3))  # even though flushing works again
    assert sample("dicomflow_spool_writable") == 0
    spool.settle()  # what was acknowledged still reaches the spool
    assert spool.path_for(PATIENT, "1.2.1").read_bytes() == instance(1)
    journal.close()
    metrics.SPOOL_WRITABLE.set(1)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs mounted for the test."""
    try:
        with small_filesystem(tmp_path / "disk", "24m") as mount_point:
            yield mount_point
    except OSError as exc:
        pytest.skip(str(exc))


def test_a_segment_larger_than_the_free_space_is_made_to_fit(small_disk: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="dicomflow.engine.journal"):
        journal, _spool, _series = make(small_disk, segment_bytes=64 * 1024 * 1024)
    try:
        assert journal.segment_bytes == journal.path.stat().st_size <= 12 * 1024 * 1024
        assert journal.segment_bytes >= 8 * 1024 * 1024
        assert "spool_journal_segment_bytes" in caplog.text
    finally:
        journal.close()


def test_no_room_for_a_segment_is_one_line_naming_the_setting(small_disk: Path):
    filler = fill_filesystem(small_disk)
    os.truncate(filler, filler.stat().st_size - 6 * 1024 * 1024)  # 6 MiB left

    with pytest.raises(SpoolError) as raised:
        make(small_disk)

    message = str(raised.value)
    assert "spool_journal_segment_bytes" in message and "\n" not in message
    assert not list((small_disk / "journal").iterdir())


def test_a_segment_the_disk_cannot_hold_is_not_left_half_made(small_disk: Path, monkeypatch):
    monkeypatch.setattr(journal_module, "free_bytes", lambda _directory: 1 << 40, raising=False)

    with pytest.raises(SpoolError, match="No space left"):
        make(small_disk, segment_bytes=64 * 1024 * 1024)

    assert not list((small_disk / "journal").iterdir())
