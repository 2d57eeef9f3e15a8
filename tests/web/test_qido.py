"""QIDO-RS from the catalog answers every search as the former implementation did (every
series' metadata matched with ``Query.matches``: kept here as the reference), over an
archive of pydicom's corpus and synthetic series; hostile parameters get 400 or correct
empty results."""

import contextlib
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pydicom.data
import pytest
from web_support import WebNode, serve_web

from dicomflow.cod.query import ArchiveReader, SeriesSummary, instance_number, plain_attributes
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import is_valid_uid
from dicomflow.dicom.matching import DicomJson, Query, parse_query
from dicomflow.engine.series_archive import archive_series
from dicomflow.errors import ArchiveError
from dicomflow.settings import build_settings
from dicomflow.web.dicomweb.qido import INSTANCE, SERIES, SERIES_STORED, STUDY, STUDY_STORED

CORPUS = Path(pydicom.data.__file__).parent / "test_files"
ONLINE = {"vr": "CS", "Value": ["ONLINE"]}
NAMES = ["Smith^John", "smi%th^Percent", "Smi_th^Under", "O'Brien^Quote", "SMITHERS^Upper"]


@dataclass
class Archive:
    web: WebNode
    datastore: str
    http: httpx.Client


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    folder = tmp_path_factory.mktemp("qido")
    datastore = str(folder / "archive")
    for index, files in enumerate(_series_files(folder)):
        source = folder / "in" / str(index)
        source.mkdir(parents=True)
        for file in files:
            shutil.copy(file, source / f"{len(list(source.iterdir()))}.dcm")
        with contextlib.suppress(ArchiveError):  # refused corpus files: the others are kept
            archive_series(input_dir=str(source), datastore=datastore, thumbnail=False)
    settings = build_settings(data_directory=folder / "data", archive_datastore=datastore)
    web = serve_web(settings)
    with web.client() as http:
        yield Archive(web, datastore, http)
    web.server.stop()


def _series_files(folder: Path) -> list[list[Path]]:
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for path in sorted(CORPUS.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids = [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
        except Exception:
            continue
        if all(is_valid_uid(uid) for uid in uids):
            groups[(uids[0], uids[1])].append(path)
    study = None
    for index, name in enumerate(NAMES):
        datasets = make_ct_series(3, rows=4, columns=4, patient_id=f"Q{index}", patient_name=name)
        for number, ds in enumerate(datasets):
            study = study or str(ds.StudyInstanceUID)
            ds.StudyInstanceUID = study if index < 2 else ds.StudyInstanceUID
            ds.StudyDate, ds.AccessionNumber = f"2024010{index + 1}", f"A_{index}%"
            ds.Modality = ("CT", "MR", "PT")[index % 3]
            ds.InstanceNumber = 3 - number if index == 3 else number + 1
        groups[("synthetic", str(index))] = write_series(
            datasets, folder / "synthetic" / str(index)
        )
    return list(groups.values())


# -- the former implementation --------------------------------------------------------------


def former(reader: ArchiveReader, route: str, params: list[tuple[str, str]]) -> list[DicomJson]:
    """What QIDO-RS answered before the catalog (RetrieveURL left out)."""
    query = parse_query(params)
    parts = route.strip("/").split("/")
    study = parts[1] if len(parts) > 2 else None
    series = parts[3] if len(parts) > 4 else None
    summaries = [s for s in reader.summaries(study) if s.instance_count > 0]
    if parts[-1] == "studies":
        return query.page(_studies(summaries, query))
    if parts[-1] == "series":
        returned = SERIES | (STUDY_STORED if study is None else set())
        found = [_pick(c, returned, query) for s in summaries if query.matches(c := _series(s))]
        return query.page(found)
    returned = INSTANCE | (SERIES_STORED if series is None else set())
    returned |= STUDY_STORED if study is None else set()
    found = []
    for s in summaries:
        if series in (None, s.series_uid):
            found += [_pick(c, returned, query) for c in _instances(reader, s) if query.matches(c)]
    return query.page(found)


def _studies(summaries: list[SeriesSummary], query: Query) -> list[DicomJson]:
    by_study: dict[str, list[SeriesSummary]] = defaultdict(list)
    for summary in summaries:
        by_study[summary.study_uid].append(summary)
    results = []
    for study, series in by_study.items():
        modalities = sorted({s.modality for s in series if s.modality})
        computed = {
            "0020000D": _uid(study),
            "00080056": ONLINE,
            "00201206": {"vr": "IS", "Value": [len(series)]},
            "00201208": {"vr": "IS", "Value": [sum(s.instance_count for s in series)]},
            "00080061": {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
        }
        if any(query.matches({**s.attributes, **computed}) for s in series):
            results.append(_pick({**series[0].attributes, **computed}, STUDY, query))
    return results


def _series(s: SeriesSummary) -> DicomJson:
    computed = {"0020000D": _uid(s.study_uid), "0020000E": _uid(s.series_uid)}
    computed |= {"00080056": ONLINE, "00201209": {"vr": "IS", "Value": [s.instance_count]}}
    return {**s.attributes, **computed}


def _instances(reader: ArchiveReader, s: SeriesSummary) -> list[DicomJson]:
    document = reader.document(s.study_uid, s.series_uid)
    records = sorted(document.instances.items(), key=lambda i: (instance_number(i[1]), i[0]))
    found = []
    for uid, record in records:
        metadata = record.get("metadata", {})
        candidate = {**s.attributes, **plain_attributes(metadata)}
        candidate |= {"0020000D": _uid(s.study_uid), "0020000E": _uid(s.series_uid)}
        candidate |= {"00080018": _uid(uid), "00080056": ONLINE}
        if metadata.get("00020010", {}).get("Value"):
            candidate["00083002"] = {"vr": "UI", "Value": list(metadata["00020010"]["Value"])}
        found.append(candidate)
    return found


def _pick(candidate: DicomJson, returned: set[str], query: Query) -> DicomJson:
    tags = set(candidate) if query.include_all else (returned | query.key_tags() | query.include)
    return {tag: candidate[tag] for tag in sorted(tags & set(candidate)) if tag != "00081190"}


def _uid(value: str) -> DicomJson:
    return {"vr": "UI", "Value": [value]}


# -- the comparison ---------------------------------------------------------------------------

SEARCHES: list[list[tuple[str, str]]] = [
    [],
    [("PatientID", "Q1")],
    [("PatientID", "Q?")],
    [("PatientName", "smi*")],
    [("PatientName", "SMI*")],
    [("PatientName", "smi%*")],
    [("PatientName", "smi_*")],
    [("PatientName", "*^*")],
    [("00100010", "o'brien*")],
    [("StudyDate", "20240101-20240103")],
    [("StudyDate", "-20240102")],
    [("StudyDate", "20240104")],
    [("StudyTime", "-120000")],
    [("Modality", "MR")],
    [("Modality", "CT,PT")],
    [("ModalitiesInStudy", "MR")],
    [("AccessionNumber", "A_1%")],
    [("AccessionNumber", "A?1*")],
    [("SeriesNumber", "1")],
    [("InstanceNumber", "2")],
    [("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2")],
    [("StudyDescription", "*")],
    [("SeriesDescription", "*a*")],
    [("PatientSex", "F")],
    [("InstanceAvailability", "ONLINE")],
    [("InstanceAvailability", "OFFLINE")],
    [("includefield", "all"), ("limit", "3")],
    [("includefield", "PatientSex,00080070"), ("Modality", "CT")],
    [("limit", "2")],
    [("limit", "2"), ("offset", "3")],
    [("limit", "0")],
    [("offset", "100000")],
    [("Modality", "CT"), ("limit", "2"), ("offset", "2")],
    [("offset", "4")],
    [("InstanceAvailability", "ONLINE"), ("limit", "1"), ("offset", "1")],
    [("fuzzymatching", "true"), ("PatientName", "smith*")],
    [("PatientName", "x" * 10_000)],
    [("PatientName", "smi\x00*")],
    [("StudyDate", "2024\x00-")],
    [("PatientName", "'; DROP TABLE series; --")],
    [("AccessionNumber", "*a" * 60 + "*b")],
]


def _routes(reader: ArchiveReader) -> list[str]:
    summaries = reader.summaries()
    by_study: dict[str, list[str]] = defaultdict(list)
    for s in summaries:
        by_study[s.study_uid].append(s.series_uid)
    study = next(uid for uid, series in by_study.items() if len(series) > 1)
    return [
        "/studies",
        "/series",
        "/instances",
        f"/studies/{study}/series",
        f"/studies/{study}/instances",
        f"/studies/{study}/series/{by_study[study][1]}/instances",
    ]


def test_every_search_answers_as_before(archive: Archive) -> None:
    reader = ArchiveReader(archive.datastore)
    assert len(reader.summaries()) > 20
    answered = 0
    for route in _routes(reader):
        for params in SEARCHES:
            response = archive.http.get(f"/dicomweb{route}", params=params)
            assert response.status_code == 200, (route, params, response.text)
            found = [_without_url(item) for item in response.json()]
            assert found == former(reader, route, params), (route, params)
            answered += len(found)
    assert answered > 500


def _without_url(item: dict[str, Any]) -> dict[str, Any]:
    return {tag: element for tag, element in item.items() if tag != "00081190"}


def test_results_carry_their_retrieve_url(archive: Archive) -> None:
    [study] = archive.http.get("/dicomweb/studies", params={"PatientID": "Q3"}).json()
    uid = study["0020000D"]["Value"][0]
    assert study["00081190"]["Value"] == [f"{archive.web.url}/dicomweb/studies/{uid}"]
    url = study["00081190"]["Value"][0]
    matched = archive.http.get("/dicomweb/studies", params={"RetrieveURL": url}).json()
    assert [item["0020000D"] for item in matched] == [study["0020000D"]]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"NoSuchKeyword": "1"}, "NoSuchKeyword"),
        ({"limit": "abc"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"limit": "1" * 10_000}, "limit"),
        ({"x" * 10_000: "1"}, "neither"),
    ],
)
def test_bad_parameters_get_400_naming_them(
    archive: Archive, params: dict[str, str], named: str
) -> None:
    for route in ("/studies", "/series", "/instances"):
        response = archive.http.get(f"/dicomweb{route}", params=params)
        assert response.status_code == 400 and named in response.text


def test_the_dashboard_lists_studies_from_the_catalog_a_page_at_a_time(archive: Archive) -> None:
    first = archive.http.get("/api/archive/studies", params={"limit": 5}).json()
    rest = archive.http.get("/api/archive/studies", params={"limit": 500, "offset": 5}).json()
    studies = [s["uid"] for s in first["studies"] + rest["studies"]]
    qido = [s["0020000D"]["Value"][0] for s in archive.http.get("/dicomweb/studies").json()]
    assert studies == qido and first["total"] == len(qido)


def test_the_dashboard_lists_patients_from_the_catalog(archive: Archive) -> None:
    first = archive.http.get("/api/archive/patients", params={"limit": 2}).json()
    rest = archive.http.get("/api/archive/patients", params={"limit": 500, "offset": 2}).json()
    patients = first["patients"] + rest["patients"]
    assert len(patients) == first["total"] and len({p["patient"] for p in patients}) > 5
    assert all(p["identifiers"] == {} for p in patients)  # hashed unless shown
    counts = [p for p in patients if p["series"] == 1 and p["instances"] == 3]
    assert len(counts) >= 4  # the synthetic patients: one series of three instances
    assert archive.http.get("/api/archive/patients", params={"limit": 0}).status_code == 400
