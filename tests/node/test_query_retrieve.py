"""The archive's Query/Retrieve provider: paging through the catalog, move destinations,
identifiers refused before any answer; the ``move_destinations`` setting."""

import os
import subprocess
import sys
from itertools import islice
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.cod.catalog import Level, LocatedInstance, Scope
from dicomflow.cod.query import SeriesDocument
from dicomflow.dicom.matching import DicomJson, Query
from dicomflow.engine.query_retrieve import ArchiveQueryRetrieve
from dicomflow.errors import (
    CODIntegrityError,
    InvalidQueryDataset,
    QueryKeyError,
    UnknownMoveDestinationError,
    UnknownQueryLevelError,
)
from dicomflow.net.pynetdicom_query_retrieve import failure_status
from dicomflow.net.query_retrieve import InformationModel, QueryRequest
from dicomflow.settings import build_settings

DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")

ALL = Scope()


class ListCatalog:
    """A catalog of ``count`` studies that notes every search's paging."""

    def __init__(self, count: int) -> None:
        self.studies = [
            {
                "0020000D": {"vr": "UI", "Value": [f"1.2.826.0.1.{n}"]},
                "00100020": {"vr": "LO", "Value": [f"P{n}"]},
            }
            for n in range(count)
        ]
        self.pages: list[tuple[int, int | None]] = []

    def record(self, document: SeriesDocument) -> None:
        raise NotImplementedError

    def forget(self, study_uid: str, series_uid: str) -> None:
        raise NotImplementedError

    def search(self, level: Level, query: Query, scope: Scope = ALL) -> list[DicomJson]:
        self.pages.append((query.offset, query.limit))
        return query.page([study for study in self.studies if query.matches(study)])

    def locate(self, level: Level, query: Query, scope: Scope = ALL) -> list[LocatedInstance]:
        return []

    def close(self) -> None:
        pass


def request(model: InformationModel = InformationModel.STUDY_ROOT, **keys: object) -> QueryRequest:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for name, value in keys.items():
        setattr(identifier, name, value)
    return QueryRequest(model, identifier, "FINDSCU", "127.0.0.1")


def provider(tmp_path: Path, catalog: ListCatalog, *destinations: Address) -> ArchiveQueryRetrieve:
    return ArchiveQueryRetrieve(catalog, str(tmp_path), destinations, ae_title="NODE")


def test_find_pages_through_the_catalog_lazily(tmp_path: Path) -> None:
    catalog = ListCatalog(1234)
    found = provider(tmp_path, catalog).find(request(StudyInstanceUID="", PatientID=""))
    answers = (answer.dataset() for answer in found)
    first = list(islice(answers, 3))
    assert catalog.pages == [(0, 500)]  # a peer that stops early costs one page
    assert [str(a.PatientID) for a in first] == ["P0", "P1", "P2"]
    rest = list(answers)
    assert len(first) + len(rest) == 1234
    assert catalog.pages == [(0, 500), (500, 500), (1000, 500)]
    assert {a.RetrieveAETitle for a in rest} == {"NODE"}
    assert {a.QueryRetrieveLevel for a in rest} == {"STUDY"}


def test_find_answers_the_keys_matching(tmp_path: Path) -> None:
    found = provider(tmp_path, ListCatalog(30)).find(request(PatientID="P2*"))
    answers = [answer.dataset() for answer in found]
    assert sorted(str(a.PatientID) for a in answers) == ["P2"] + [f"P2{n}" for n in range(10)]
    assert all("StudyInstanceUID" not in a for a in answers)  # not asked for


@pytest.mark.parametrize("level", ["PATIENT", "", "../x", "IMAGES"])
def test_an_unknown_level_is_refused_before_any_answer(tmp_path: Path, level: str) -> None:
    catalog = ListCatalog(3)
    bad = request()
    bad.identifier.QueryRetrieveLevel = level
    with pytest.raises(UnknownQueryLevelError, match="QueryRetrieveLevel"):
        provider(tmp_path, catalog).find(bad)
    assert catalog.pages == []


@pytest.mark.parametrize("uid", ["", "*", "1.2.*"])
def test_a_retrieval_without_its_unique_key_is_refused(tmp_path: Path, uid: str) -> None:
    with pytest.raises(InvalidQueryDataset, match="0020000D"):
        provider(tmp_path, ListCatalog(3)).retrieve(request(StudyInstanceUID=uid))


def test_destinations_are_known_by_ae_title_first_given_first(tmp_path: Path) -> None:
    viewer = Address("10.0.0.7", 11112, "VIEWER")
    pacs = Address("10.0.0.5", 104, "PACS", tls=True)
    shadow = Address("10.0.0.9", 104, "VIEWER")
    qr = provider(tmp_path, ListCatalog(0), viewer, pacs, shadow)
    assert qr.destination("VIEWER") == viewer
    assert qr.destination("PACS  ") == pacs
    assert qr.destination("viewer") is None
    assert qr.destination("") is None
    assert qr.destination("../x") is None


def test_move_destinations_come_before_the_endpoints() -> None:
    settings = build_settings(
        move_destinations=["VIEWER@10.0.0.7:11112", "PACS@10.0.0.6:104?tls"],
        endpoints=["PACS@10.0.0.5:104"],
    )
    assert settings.move_destination_addresses() == [
        Address("10.0.0.7", 11112, "VIEWER"),
        Address("10.0.0.6", 104, "PACS", tls=True),
        Address("10.0.0.5", 104, "PACS"),
    ]


@pytest.mark.parametrize(
    "entry", ["VIEWER", "10.0.0.7:104", "V@h:port", "V@h:104?x", "", "A" * 17 + "@h:1"]
)
def test_a_bad_move_destination_names_the_field(entry: str) -> None:
    with pytest.raises(ValidationError, match="move_destinations"):
        build_settings(move_destinations=[entry])


def test_move_destinations_from_the_environment_are_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DICOMFLOW_MOVE_DESTINATIONS", '["VIEWER@10.0.0.7:11112"]')
    assert build_settings().move_destinations == ["VIEWER@10.0.0.7:11112"]
    monkeypatch.setenv("DICOMFLOW_MOVE_DESTINATIONS", "VIEWER@10.0.0.7:11112")
    with pytest.raises(ValidationError, match="move_destinations"):
        build_settings()


@pytest.mark.parametrize("command", ["serve", "run"])
def test_a_bad_move_destination_option_is_one_line_naming_it(tmp_path: Path, command: str) -> None:
    pipeline = Path(__file__).parents[1] / "cli" / "pipelines" / "copy_pipeline.py"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    done = subprocess.run(
        [DICOMFLOW, command, str(pipeline), "--move-destination", "VIEWER@h"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert 'setting move_destinations: endpoint "VIEWER@h" must look like' in done.stderr
    assert "from option --move-destination" in done.stderr


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnknownQueryLevelError("QueryRetrieveLevel"), 0xC000),
        (InvalidQueryDataset("bad"), 0xA900),
        (QueryKeyError("PatientID"), 0xA900),
        (UnknownMoveDestinationError("X"), 0xA801),
        (CODIntegrityError("crc32c"), 0xC000),
        (RuntimeError("?"), 0xC000),
    ],
)
def test_pynetdicom_statuses_follow_the_provider_errors(
    error: Exception, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert failure_status(error, "C-FIND from FINDSCU (127.0.0.1)") == status
    assert "C-FIND from FINDSCU (127.0.0.1) failed" in caplog.text
