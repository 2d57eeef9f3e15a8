"""The catalog (SQLite and PostgreSQL): the same answers as matching every series' metadata
with :meth:`Query.matches`, over pydicom's corpus and synthetic series; records, forgets,
locates; hostile keys; bad locations."""

import multiprocessing
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pydicom.data
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from dicomflow.cod import CODObject, Instance
from dicomflow.cod.catalog import Catalog, Level, Scope, default_catalog, open_catalog
from dicomflow.cod.catalog_rows import in_summary
from dicomflow.cod.query import ArchiveReader, SeriesSummary, instance_number, plain_attributes
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import is_valid_uid
from dicomflow.dicom.matching import DicomJson, Query, parse_query
from dicomflow.errors import CatalogError
from support import PostgresServer

CORPUS = Path(pydicom.data.__file__).parent / "test_files"  # no download attempts
PATIENTS = [  # (PatientID, PatientName, StudyDate, StudyTime, Modality, AccessionNumber)
    ("CAT001", "Smith^John", "20240105", "093000", "CT", "ACC1"),
    ("CAT002", "smi%th^Percent", "20240210", "101500.25", "MR", "ACC_2"),
    ("CAT003", "Smi_th^Under", "20231231", "235959", "CT", "ACC%3"),
    ("CAT004", "O'Brien^Quote", "20240301", "000000", "PT", "A'CC4"),
    ("CAT005", "SMITHERS^Upper", "20240315", "120000", "MR", "ACC5"),
]


def write_archive(folder: Path) -> str:
    """A local datastore with pydicom's corpus and synthetic series (one study with two
    modalities, one patient with two studies); its path."""
    datastore = str(folder / "archive")
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in sorted(str(p) for p in CORPUS.glob("*.dcm")):
        key = _series_key(path)
        if key is not None:
            groups[key].append(Path(path))
    for paths in _synthetic(folder / "synthetic"):
        groups[_series_key(str(paths[0])) or ("", "")].extend(paths)
    for (study, series), paths in groups.items():
        with CODObject(
            datastore_path=datastore, study_uid=study, series_uid=series, lock=True
        ) as cod:
            cod.append([Instance(dicom_uri=str(p)) for p in paths])
            cod.sync()
    return datastore


def _series_key(path: str) -> tuple[str, str] | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uids = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
    except Exception:
        return None
    return (uids[0], uids[1]) if all(is_valid_uid(uid) for uid in uids) else None


def _synthetic(folder: Path) -> Iterator[list[Path]]:
    shared_study = generate_uid()
    for index, (pid, name, date, time, modality, accession) in enumerate(PATIENTS):
        study = shared_study if index < 2 else generate_uid()
        datasets = make_ct_series(
            3,
            rows=4,
            columns=4,
            patient_id=pid,
            patient_name=name,
            study_instance_uid=study,
            modality=modality,
        )
        for number, ds in enumerate(datasets, start=1):
            _describe(ds, pid, name, date, time, accession, index)
            ds.InstanceNumber = 4 - number if index == 3 else number  # stored out of order
        yield write_series(datasets, folder / str(index))
    later = make_ct_series(2, rows=4, columns=4, patient_id="CAT004", patient_name="O'Brien^Quote")
    for ds in later:
        _describe(ds, "CAT004", "O'Brien^Quote", "20250101", "080000", "ACC6", 6)
    yield write_series(later, folder / "later")


def _describe(
    ds: Dataset, pid: str, name: str, date: str, time: str, accession: str, index: int
) -> None:
    ds.PatientID, ds.PatientName = pid, name
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, time, accession
    ds.StudyID, ds.SeriesNumber = f"S{index}", index + 1
    ds.StudyDescription = f"Study {index} of {name}"
    ds.PatientBirthDate = f"19{50 + index}0101"


# -- the reference: every series' metadata matched with Query.matches --------------------


def reference(reader: ArchiveReader, level: Level, query: Query, scope: Scope) -> list[DicomJson]:
    summaries = [
        s
        for s in reader.summaries(scope.study_uid)
        if s.instance_count and scope.series_uid in (None, s.series_uid)
    ]
    if level is Level.SERIES:
        found = [c for s in summaries if query.matches(c := _series(s))]
    elif level is Level.IMAGE:
        found = [c for s in summaries for c in _instances(reader, s) if query.matches(c)]
    else:
        found = _grouped(level, summaries, query)
    if level is Level.IMAGE or _whole(query):
        return query.page(found)
    return [_summarized(item) for item in query.page(found)]


def _whole(query: Query) -> bool:
    """Whether results hold whole first instances' attributes, not series summaries."""
    return query.include_all or not all(in_summary(t) for t in query.key_tags() | query.include)


def _summarized(item: DicomJson) -> DicomJson:
    computed = ("0020000D", "0020000E", "00080061", "00201200", "00201202", "00201204")
    computed += ("00201206", "00201208", "00201209")
    return {t: e for t, e in item.items() if in_summary(t) or t in computed}


def _series(s: SeriesSummary) -> DicomJson:
    computed = {"0020000D": _uid(s.study_uid), "0020000E": _uid(s.series_uid)}
    return {**s.attributes, **computed, "00201209": _count(s.instance_count)}


def _instances(reader: ArchiveReader, s: SeriesSummary) -> list[DicomJson]:
    document = reader.document(s.study_uid, s.series_uid)
    assert document is not None
    results = []
    for uid, record in sorted(
        document.instances.items(), key=lambda i: (instance_number(i[1]), i[0])
    ):
        metadata = record.get("metadata", {})
        candidate = {**s.attributes, **plain_attributes(metadata)}
        candidate |= {
            "0020000D": _uid(s.study_uid),
            "0020000E": _uid(s.series_uid),
            "00080018": _uid(uid),
        }
        if metadata.get("00020010", {}).get("Value"):
            candidate["00083002"] = {"vr": "UI", "Value": list(metadata["00020010"]["Value"])}
        results.append(dict(sorted(candidate.items())))
    return results


def _grouped(level: Level, summaries: list[SeriesSummary], query: Query) -> list[DicomJson]:
    groups: dict[str, list[SeriesSummary]] = defaultdict(list)
    for s in summaries:
        key = s.study_uid if level is Level.STUDY else _patient(s)
        groups[key].append(s)
    found = []
    for key in sorted(groups):
        series = sorted(groups[key], key=lambda s: (s.study_uid, s.series_uid))
        computed = _study(key, series) if level is Level.STUDY else _patient_counts(series)
        if any(query.matches({**s.attributes, **computed}) for s in series):
            attributes = series[0].attributes
            if level is Level.PATIENT:
                kept = {t: e for t, e in attributes.items() if t.startswith(("0010", "00080005"))}
                attributes = {"00100020": {"vr": "LO"}, **kept}
            found.append({**attributes, **computed})
    return found


def _patient(s: SeriesSummary) -> str:
    values = s.attributes.get("00100020", {}).get("Value") or []
    return "\\".join(str(v) for v in values if v not in (None, ""))


def _study(study: str, series: list[SeriesSummary]) -> DicomJson:
    modalities = sorted({s.modality for s in series if s.modality})
    return {
        "0020000D": _uid(study),
        "00201206": _count(len(series)),
        "00201208": _count(sum(s.instance_count for s in series)),
        "00080061": {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
    }


def _patient_counts(series: list[SeriesSummary]) -> DicomJson:
    return {
        "00201200": _count(len({s.study_uid for s in series})),
        "00201202": _count(len(series)),
        "00201204": _count(sum(s.instance_count for s in series)),
    }


def _uid(value: str) -> DicomJson:
    return {"vr": "UI", "Value": [value]}


def _count(value: int) -> DicomJson:
    return {"vr": "IS", "Value": [value]}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def datastore(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_archive(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp("sqlite") / "catalog.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.database()


@pytest.fixture(scope="module")
def catalog(datastore: str, location: str) -> Iterator[Catalog]:
    opened = open_catalog(location)
    reader = ArchiveReader(datastore)
    for summary in reader.summaries():
        document = reader.document(summary.study_uid, summary.series_uid)
        assert document is not None
        opened.record(document)
    yield opened
    opened.close()


QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("PatientID", "CAT001")],
    [("PatientID", "CAT00?")],
    [("PatientID", "cat001")],
    [("PatientName", "smi*")],
    [("PatientName", "SMI*")],
    [("PatientName", "smi%*")],
    [("PatientName", "smi_th*")],
    [("PatientName", "smi?th*")],
    [("PatientName", "*th^*")],
    [("PatientName", "o'brien^quote")],
    [("PatientName", "*a*a*a*a*a*e")],
    [("PatientName", "'; DROP TABLE series; --")],
    [("PatientName", "smi\x00*")],
    [("PatientName", "x" * 10_000)],
    [("PatientName", "*" * 5000 + "a")],
    [("PatientBirthDate", "19500101-19520101")],
    [("StudyDate", "20240101-20240331")],
    [("StudyDate", "20240105")],
    [("StudyDate", "-20231231")],
    [("StudyDate", "2024-")],
    [("StudyDate", "-")],
    [("StudyDate", "20240101-\x00")],
    [("StudyTime", "100000-130000")],
    [("StudyTime", "1015")],
    [("StudyDate", "20240101-"), ("StudyTime", "-1200")],
    [("Modality", "CT")],
    [("Modality", "CT,MR")],
    [("Modality", "M?")],
    [("Modality", "%")],
    [("ModalitiesInStudy", "MR")],
    [("ModalitiesInStudy", "PT,CT")],
    [("AccessionNumber", "ACC_2")],
    [("AccessionNumber", "ACC%3")],
    [("AccessionNumber", "ACC*")],
    [("AccessionNumber", "A'CC4")],
    [("StudyID", "S1")],
    [("SeriesNumber", "2")],
    [("SeriesNumber", "2.0")],
    [("SeriesNumber", "x")],
    [("SeriesNumber", "nan")],
    [("InstanceNumber", "2")],
    [("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")],
    [("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2,1.2.840.10008.5.1.4.1.1.4")],
    [("StudyDescription", "Study 1*")],
    [("StudyDescription", "*a" * 60 + "*b")],
    [("ReferringPhysicianName", "")],
    [("PatientSex", "M")],
    [("Rows", "64")],
    [("NumberOfStudyRelatedSeries", "2")],
    [("NumberOfPatientRelatedStudies", "2")],
    [("PatientID", "CAT001"), ("Modality", "MR")],
    [("PatientID", "*"), ("includefield", "all")],
    [("limit", "3")],
    [("limit", "2"), ("offset", "3")],
    [("limit", "0")],
    [("offset", "100000")],
    [("Modality", "CT"), ("limit", "2"), ("offset", "2")],
    [("offset", "5")],
    [("PatientName", "smi*"), ("limit", "1"), ("offset", "1")],
    [("StudyDescription", "Study*"), ("limit", "2"), ("offset", "1")],
    [("Modality", "CT"), ("limit", "1000")],
]


def _uids_query(datastore: str) -> list[list[tuple[str, str]]]:
    summaries = ArchiveReader(datastore).summaries()
    first, second = summaries[0], summaries[-1]
    return [
        [("StudyInstanceUID", first.study_uid)],
        [("StudyInstanceUID", f"{first.study_uid}\\{second.study_uid}")],
        [("SeriesInstanceUID", f"{first.series_uid},{second.series_uid}")],
        [("StudyInstanceUID", ",".join(["1.2.3"] * 2000))],
    ]


@pytest.mark.parametrize("level", list(Level))
def test_searches_answer_as_matching_every_series_metadata(
    catalog: Catalog, datastore: str, level: Level
) -> None:
    reader = ArchiveReader(datastore)
    summaries = reader.summaries()
    assert len(summaries) > 20
    scopes = [Scope(), Scope(summaries[-1].study_uid), Scope(*_two_series_study(summaries))]
    checked = 0
    for items in QUERIES + _uids_query(datastore):
        for scope in scopes if level in (Level.SERIES, Level.IMAGE) else scopes[:1]:
            expected = reference(reader, level, parse_query(items), scope)
            found = catalog.search(level, parse_query(items), scope)
            assert found == expected, (level, items, scope)
            checked += len(found)
    assert checked > 100


def _two_series_study(summaries: list[SeriesSummary]) -> tuple[str, str]:
    by_study: dict[str, list[str]] = defaultdict(list)
    for s in summaries:
        by_study[s.study_uid].append(s.series_uid)
    study = next(uid for uid, series in by_study.items() if len(series) > 1)
    return study, by_study[study][1]


def test_matches_are_specific(catalog: Catalog) -> None:
    def ids(items: list[tuple[str, str]], level: Level = Level.STUDY) -> list[str]:
        found = catalog.search(level, parse_query(items))
        return [str(r.get("00100020", {}).get("Value", [""])[0]) for r in found]

    smi = ["CAT001", "CAT002", "CAT003", "CAT005"]
    assert sorted(ids([("PatientName", "smi*")], Level.SERIES)) == smi
    assert ids([("PatientName", "smi%*")], Level.SERIES) == ["CAT002"]
    assert ids([("PatientName", "smi_*")], Level.SERIES) == ["CAT003"]
    assert ids([("AccessionNumber", "ACC_2")], Level.SERIES) == ["CAT002"]
    assert ids([("AccessionNumber", "ACC?2")], Level.SERIES) == ["CAT002"]
    assert ids([("AccessionNumber", "ACC_*")], Level.SERIES) == ["CAT002"]
    assert ids([("PatientName", "'; DROP TABLE series; --")]) == []
    assert ids([("PatientID", "CAT004")], Level.PATIENT) == ["CAT004"]
    patient = catalog.search(Level.PATIENT, parse_query([("PatientID", "CAT004")]))[0]
    assert [patient[t]["Value"] for t in ("00201200", "00201202", "00201204")] == [[2], [2], [5]]
    study = catalog.search(Level.STUDY, parse_query([("ModalitiesInStudy", "MR")]))
    assert ["CT", "MR"] in [s["00080061"]["Value"] for s in study]


def test_locate_orders_by_study_series_and_instance_number(catalog: Catalog) -> None:
    located = catalog.locate(Level.PATIENT, parse_query([("PatientID", "CAT004")]))
    assert len(located) == 5
    assert [i.study_uid for i in located] == sorted(i.study_uid for i in located)
    out_of_order = catalog.search(Level.IMAGE, parse_query([("AccessionNumber", "A'CC4")]))
    numbers = [r["00200013"]["Value"][0] for r in out_of_order]
    assert numbers == [1, 2, 3]
    series = catalog.locate(Level.SERIES, parse_query([("AccessionNumber", "A'CC4")]))
    assert [i.sop_instance_uid for i in series] == [r["00080018"]["Value"][0] for r in out_of_order]
    assert {i.sop_class_uid for i in series} == {"1.2.840.10008.5.1.4.1.1.2"}
    assert all(i.transfer_syntax for i in series)
    study = catalog.locate(Level.STUDY, parse_query([("PatientID", "CAT002")]))
    assert len(study) == 6  # every series of the study CAT002's series is in
    images = catalog.locate(
        Level.IMAGE, parse_query([("InstanceNumber", "1"), ("PatientID", "CAT00*")])
    )
    assert len(images) == 6


def test_record_is_idempotent_and_forget_removes(tmp_path: Path, location_factory: Any) -> None:
    catalog = open_catalog(location_factory())
    datasets = make_ct_series(2, rows=4, columns=4, patient_id="MOVE1")
    paths = write_series(datasets, tmp_path / "series")
    datastore = str(tmp_path / "archive")
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    with CODObject(datastore_path=datastore, study_uid=study, series_uid=series, lock=True) as cod:
        cod.append([Instance(dicom_uri=str(p)) for p in paths])
        cod.sync()
    document = ArchiveReader(datastore).document(study, series)
    assert document is not None
    catalog.record(document)
    catalog.record(document)
    everything = Query()
    assert len(catalog.search(Level.IMAGE, everything)) == 2
    assert [p["00100020"]["Value"] for p in catalog.search(Level.PATIENT, everything)] == [
        ["MOVE1"]
    ]
    moved = {
        uid: {
            **record,
            "metadata": {**record["metadata"], "00100020": {"vr": "LO", "Value": ["MOVE2"]}},
        }
        for uid, record in document.instances.items()
    }
    catalog.record(type(document)(study, series, moved))
    assert [p["00100020"]["Value"] for p in catalog.search(Level.PATIENT, everything)] == [
        ["MOVE2"]
    ]
    catalog.record(type(document)(study, series, {}))  # no instance: forgotten
    assert catalog.search(Level.STUDY, everything) == []
    catalog.record(document)
    catalog.forget(study, series)
    catalog.forget(study, series)
    for level in Level:
        assert catalog.search(level, everything) == []
    catalog.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def location_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        return lambda: str(tmp_path / "own" / "catalog.sqlite")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.database


def test_sqlite_catalog_is_in_wal_mode_with_the_sqlite_url(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "c.sqlite"
    open_catalog(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    ("location", "named"),
    [
        ("ftp://host/catalog", "ftp://host/catalog"),
        ("", '""'),
        ("postgresql://user:secret@127.0.0.1:1/none", "postgresql://user:***@127.0.0.1:1/none"),
    ],
)
def test_bad_locations_name_the_setting(location: str, named: str) -> None:
    with pytest.raises(CatalogError, match="catalog setting") as caught:
        open_catalog(location)
    assert named in str(caught.value)
    assert "secret" not in str(caught.value)


def test_an_unwritable_sqlite_location_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(CatalogError, match="catalog setting"):
        open_catalog(str(tmp_path / "file" / "catalog.sqlite"))


def test_default_location_is_beside_a_local_datastore(tmp_path: Path) -> None:
    assert default_catalog(str(tmp_path / "archive")) == str(
        tmp_path / "archive" / "catalog.sqlite"
    )
    assert default_catalog(f"file://{tmp_path}/a") == f"{tmp_path}/a/catalog.sqlite"
    assert default_catalog("s3://bucket/archive", tmp_path) == str(tmp_path / "catalog.sqlite")
    assert default_catalog("s3://bucket/archive") is None


def test_tables_of_another_version_are_refused_or_replaced_for_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    open_catalog(str(path)).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE catalog_meta SET value = '0' WHERE name = 'schema'")
    with pytest.raises(CatalogError, match="cod reindex"):
        open_catalog(str(path))
    replaced = open_catalog(str(path), replace_old=True)
    assert replaced.search(Level.STUDY, Query()) == []
    replaced.close()
    open_catalog(str(path)).close()


def test_hostile_values_are_recorded_and_matched_as_query_matches_does(
    tmp_path: Path, location_factory: Any
) -> None:
    datasets = make_ct_series(1, rows=4, columns=4)
    paths = write_series(datasets, tmp_path / "series")
    datastore = str(tmp_path / "archive")
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    with CODObject(datastore_path=datastore, study_uid=study, series_uid=series, lock=True) as cod:
        cod.append([Instance(dicom_uri=str(p)) for p in paths])
        cod.sync()
    document = ArchiveReader(datastore).document(study, series)
    assert document is not None
    hostile = {
        "00100020": {"vr": "LO", "Value": ["ID\x00'; DROP TABLE series; --"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "N" * 10_000 + "\ud800"}]},
        "00080060": {"vr": "CS", "Value": ["CT", "MR"]},
        "00080016": {"vr": "UI", "Value": ["1.2\x00.3"]},
    }
    instances = {
        uid: {**record, "metadata": {**record["metadata"], **hostile}}
        for uid, record in document.instances.items()
    }
    catalog = open_catalog(location_factory())
    catalog.record(type(document)(study, series, instances))
    for items, count in [
        ([("PatientID", "ID\x00'; DROP TABLE series; --")], 1),
        ([("PatientID", "ID*")], 1),
        ([("PatientName", "n" * 10_000 + "*")], 1),
        ([("Modality", "MR")], 1),
        ([("ModalitiesInStudy", "CT")], 1),
        ([("PatientID", "ID")], 0),
    ]:
        assert len(catalog.search(Level.STUDY, parse_query(items))) == count, items
    [located] = catalog.locate(Level.IMAGE, Query())
    assert "\x00" not in located.sop_class_uid
    catalog.close()


def _record_copies(location: str, document: Any, count: int, first: int = 1) -> None:
    catalog = open_catalog(location)
    for index in range(first, first + count):
        series = f"{document.series_uid}.{index}"
        catalog.record(type(document)(document.study_uid, series, document.instances))
    catalog.close()


def test_a_writer_process_and_reader_threads_share_a_sqlite_catalog(
    tmp_path: Path, datastore: str
) -> None:
    location = str(tmp_path / "shared.sqlite")
    catalog = open_catalog(location)
    reader = ArchiveReader(datastore)
    first = reader.summaries()[0]
    document = reader.document(first.study_uid, first.series_uid)
    writer = multiprocessing.get_context("spawn").Process(
        target=_record_copies, args=(location, document, 60)
    )
    writer.start()
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while writer.is_alive():
                catalog.search(Level.SERIES, parse_query([("PatientID", "*")]))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    writer.join(60)
    for thread in threads:
        thread.join(10)
    assert writer.exitcode == 0 and failures == []
    assert len(catalog.search(Level.SERIES, Query())) == 60
    assert catalog.search(Level.STUDY, Query())[0]["00201206"]["Value"] == [60]
    catalog.close()


def test_writers_recording_series_of_one_study_at_once_count_them_all(
    datastore: str, location_factory: Any
) -> None:
    location = location_factory()
    open_catalog(location).close()
    reader = ArchiveReader(datastore)
    first = reader.summaries()[0]
    document = reader.document(first.study_uid, first.series_uid)
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_record_copies, args=(location, document, 25, 1 + 100 * index))
        for index in range(2)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    catalog = open_catalog(location)
    [study] = catalog.search(Level.STUDY, Query())
    assert study["00201206"]["Value"] == [50]
    [patient] = catalog.search(Level.PATIENT, Query())
    assert patient["00201202"]["Value"] == [50]
    catalog.close()
