"""Series locks: exclusive acquisition, release, hanging on error, generations."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
from cod_support import BUCKET, SeriesFactory

from dicomflow.cod import CODObject
from dicomflow.cod.layout import SeriesLayout, open_datastore
from dicomflow.errors import LockAcquisitionError

STUDY, SERIES = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"

RACER = """
import sys, time
from dicomflow.cod import CODObject
from dicomflow.cod.layout import open_datastore
from dicomflow.errors import LockAcquisitionError
open_datastore(sys.argv[1])  # the filesystem's imports are done before the start
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
try:
    CODObject(sys.argv[1], sys.argv[3], sys.argv[4], lock=True)
except LockAcquisitionError:
    print("refused")
else:
    print("acquired")
"""


def _lock_path(datastore: str) -> str:
    return SeriesLayout(open_datastore(datastore)[1], STUDY, SERIES).lock


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_processes_racing_for_a_series_get_one_lock(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "s3":  # the children find the server by AWS_ENDPOINT_URL, as users do
        request.getfixturevalue("s3_endpoint")
        datastore = f"s3://{BUCKET}/race-{tmp_path.name}"
    else:
        datastore = str(tmp_path / "datastore")
    start = time.time() + (6.0 if kind == "s3" else 2.0)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, datastore, str(start), STUDY, SERIES],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
    assert outputs == ["acquired"] + ["refused"] * 7


def test_lock_is_exclusive_and_released_on_clean_exit(datastore: str) -> None:
    fs, _ = open_datastore(datastore)
    with CODObject(datastore, STUDY, SERIES, lock=True):
        assert fs.exists(_lock_path(datastore))
        with pytest.raises(LockAcquisitionError, match="already held"):
            CODObject(datastore, STUDY, SERIES, lock=True)
        CODObject(datastore, STUDY, SERIES, lock=False)
    assert not fs.exists(_lock_path(datastore))
    with CODObject(datastore, STUDY, SERIES, lock=True):
        pass


def test_error_leaves_the_lock_hanging(datastore: str) -> None:
    with pytest.raises(ValueError, match="boom"), CODObject(datastore, STUDY, SERIES, lock=True):
        raise ValueError("boom")
    fs, _ = open_datastore(datastore)
    assert fs.exists(_lock_path(datastore))
    with pytest.raises(LockAcquisitionError):
        CODObject(datastore, STUDY, SERIES, lock=True)


def test_serialized_object_reacquires_its_lock(datastore: str, series: SeriesFactory) -> None:
    s = series(2)
    first = CODObject(datastore, s.study_uid, s.series_uid, lock=True)
    data = first.serialize()
    with CODObject.deserialize(**data) as cod:
        cod.append(s.instances())
        cod.sync()
    fs, root = open_datastore(datastore)
    assert not fs.exists(SeriesLayout(root, s.study_uid, s.series_uid).lock)
    with pytest.raises(LockAcquisitionError):
        CODObject.deserialize(**data)


def test_serialized_object_cannot_take_a_replaced_lock(datastore: str) -> None:
    data = CODObject(datastore, STUDY, SERIES, lock=True).serialize()
    fs, _ = open_datastore(datastore)
    fs.rm(_lock_path(datastore))
    CODObject(datastore, STUDY, SERIES, lock=True)
    with pytest.raises(LockAcquisitionError, match="generation"):
        CODObject.deserialize(**data)


def test_writer_whose_lock_was_replaced_writes_nothing(
    datastore: str, series: SeriesFactory
) -> None:
    s = series(2)
    stale = CODObject(datastore, s.study_uid, s.series_uid, lock=True)
    stale.append(s.instances())
    fs, root = open_datastore(datastore)
    layout = SeriesLayout(root, s.study_uid, s.series_uid)
    fs.rm(layout.lock)
    current = CODObject(datastore, s.study_uid, s.series_uid, lock=True)
    with pytest.raises(LockAcquisitionError):
        stale.sync()
    with pytest.raises(LockAcquisitionError):
        stale.release()
    assert not fs.exists(layout.tar)
    assert not fs.exists(layout.metadata)
    current.release()
