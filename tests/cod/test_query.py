"""ArchiveReader: series summaries and records from metadata.json, re-read only on change."""

import pytest
from cod_support import Series, SeriesFactory

from dicomflow.cod import CODObject
from dicomflow.cod.query import ArchiveReader
from dicomflow.errors import CODNotFoundError, InvalidKeyError


def _archive(datastore: str, series: Series) -> None:
    with CODObject(datastore, series.study_uid, series.series_uid, lock=True) as cod:
        assert len(cod.append(series.instances()).new) == len(series.paths)
        cod.sync()


def test_summaries_follow_the_metadata(datastore: str, series: SeriesFactory) -> None:
    first, second = series(3, "a", patient_id="P1"), series(2, "b", modality="MR")
    reader = ArchiveReader(datastore)
    assert reader.summaries() == []
    _archive(datastore, first)
    _archive(datastore, second)
    summaries = {s.series_uid: s for s in reader.summaries()}
    assert summaries[first.series_uid].instance_count == 3
    assert summaries[first.series_uid].attributes["00100020"]["Value"] == ["P1"]
    assert summaries[second.series_uid].modality == "MR"
    assert "7FE00010" not in summaries[first.series_uid].attributes
    again = {s.series_uid: s for s in reader.summaries()}
    assert again[second.series_uid] is summaries[second.series_uid]  # not parsed again
    more = series(2, "c", study_instance_uid=first.study_uid, series_instance_uid=first.series_uid)
    _archive(datastore, more)
    changed = {s.series_uid: s for s in reader.summaries()}
    assert changed[first.series_uid].instance_count == 5
    assert changed[second.series_uid] is summaries[second.series_uid]
    one_study = reader.summaries(first.study_uid)
    assert [s.series_uid for s in one_study] == [first.series_uid]
    assert reader.summaries("1.2.3") == []
    assert len(reader.summaries()) == 2


def test_documents_and_verified_reads(datastore: str, series: SeriesFactory) -> None:
    stored = series(2)
    _archive(datastore, stored)
    reader = ArchiveReader(datastore)
    document = reader.document(stored.study_uid, stored.series_uid)
    assert document is not None
    assert sorted(document.instances) == sorted(stored.uids())
    uid = stored.uids()[1]
    assert reader.instance_bytes(document, uid) == stored.paths[1].read_bytes()
    assert reader.document(stored.study_uid, stored.series_uid) is document
    assert [d.series_uid for d in reader.study_documents(stored.study_uid)] == [stored.series_uid]
    assert reader.thumbnail_jpeg(document) is None
    assert reader.document(stored.study_uid, "1.2.3") is None
    with pytest.raises(CODNotFoundError):
        reader.instance_bytes(document, "1.2.3")
    with pytest.raises(CODNotFoundError, match="no frame offset tables"):
        reader.frame_bytes(document, uid, 0)
    with pytest.raises(InvalidKeyError):
        reader.document(stored.study_uid, "../../etc")
