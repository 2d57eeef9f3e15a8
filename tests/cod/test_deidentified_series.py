"""A de-identified series: its writer marks it, it reports its pseudonymous UIDs, and
identified and de-identified instances are never mixed in one series."""

from pathlib import Path

import pytest

from dicomflow.cod import CODObject, Instance
from dicomflow.cod.metadata import load
from dicomflow.cod.store_registry import open_store
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import CODError

STUDY, SERIES = "2.25.1001", "2.25.1002"


def series_files(tmp_path: Path) -> list[Path]:
    return write_series(
        make_ct_series(2, study_instance_uid=STUDY, series_instance_uid=SERIES), tmp_path / "in"
    )


def test_a_deidentified_writer_marks_the_series(tmp_path: Path) -> None:
    datastore = str(tmp_path / "store")
    files = series_files(tmp_path)
    with CODObject(datastore, STUDY, SERIES, lock=True, deidentified=True) as cod:
        assert cod.serialize()["deidentified"] is True
        cod.append(
            [Instance.from_bytes(path.read_bytes(), f"deidentified/{path.name}") for path in files]
        )
        cod.sync()
    reader = CODObject(datastore, STUDY, SERIES, lock=False)
    assert reader.is_deidentified
    assert (reader.deid_study_uid, reader.deid_series_uid) == (STUDY, SERIES)
    document = load(open_store(reader.fs), reader.layout.metadata)
    assert (document.study_uid, document.deid_study_uid) == (STUDY, STUDY)
    assert (document.series_uid, document.deid_series_uid) == (SERIES, SERIES)
    records = reader.get_metadata(dirty=True).instances.values()
    assert {r["original_path"] for r in records} == {f"deidentified/{p.name}" for p in files}
    with (
        CODObject(datastore, STUDY, SERIES, lock=True) as plain,
        pytest.raises(CODError, match="de-identified"),
    ):
        plain.append([Instance(str(files[0]))])


def test_an_identified_series_is_never_marked(tmp_path: Path) -> None:
    datastore = str(tmp_path / "store")
    files = series_files(tmp_path)
    with CODObject(datastore, STUDY, SERIES, lock=True) as cod:
        cod.append([Instance(str(path)) for path in files])
        cod.sync()
        assert not cod.is_deidentified and cod.deid_study_uid is None
        assert "deidentified" not in cod.serialize()
    with pytest.raises(CODError, match="not de-identified"):
        CODObject(datastore, STUDY, SERIES, lock=True, deidentified=True)
    CODObject(datastore, STUDY, SERIES, lock=True).release()  # no lock was left hanging
