"""``HistoricAbstractInput`` with Orthanc as the PACS: a patient's new study arrives
(storescu), the input finds the patient's earlier studies in Orthanc (C-FIND), has them
moved to the node (C-MOVE), and the round sees the new study and the earlier ones."""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from historic_pipelines import PORT_VARIABLE, HistoricPipeline, PriorStudies
from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.errors import IncorrectlyConfigured, InvalidDataset
from dicomflow.node.historic import HistoricAbstractInput, HistoricInputState
from dicomflow.node.input import InputOptions
from support import OrthancPeer, free_port, storescu, wait_for


def study(
    folder: Path, date: str, description: str, count: int, patient: str = "HIST-1"
) -> list[Path]:
    series = make_ct_series(count, rows=8, columns=8, patient_id=patient)
    for dataset in series:
        dataset.StudyDate = date
        dataset.SeriesDescription = description
    return write_series(series, folder)


@dataclass(frozen=True)
class Pacs:
    orthanc: OrthancPeer
    node_port: int  # where Orthanc moves studies to (AE title DICOMFLOW)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pacs]:
    """Orthanc holding, for patient HIST-1, a 2019 study and a 2024 one; for HIST-2 a
    2018 one. HIST-3 has nothing."""
    root = tmp_path_factory.mktemp("historic")
    node_port = free_port()
    orthanc = OrthancPeer(root / "orthanc", modalities={"node": f"DICOMFLOW@127.0.0.1:{node_port}"})
    earlier = study(root / "2019", "20190101", "baseline", 3)
    later = study(root / "2024", "20240601", "future", 1)  # after the new one
    other = study(root / "other", "20180101", "other", 1, patient="HIST-2")
    for path in earlier + later + other:
        orthanc.rest("POST", "/instances", path.read_bytes())
    yield Pacs(orthanc, node_port)
    orthanc.stop()


def round_of(
    pacs: Pacs, patient: str, make_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Path], dict[str, Any]]:
    """Start a node whose historic input fetches from ``pacs``, send it a new study of
    ``patient`` dated 2023-03-01; return its files and what the round saw."""
    port = pacs.orthanc.dicom_port
    monkeypatch.setenv(PORT_VARIABLE, str(port))  # for a worker that imports the pipeline
    address = Address("127.0.0.1", port, pacs.orthanc.ae_title)
    monkeypatch.setattr(PriorStudies, "address", address)
    new = study(tmp_path / "new", "20230301", "current", 2, patient=patient)
    make_node(HistoricPipeline, port=pacs.node_port)
    storescu(pacs.node_port, new, aec="DICOMFLOW")
    record = tmp_path / "records" / "historic.json"
    wait_for(record.exists, timeout_s=60, what="the round with the historic input")
    return new, json.loads(record.read_text())


def test_the_round_sees_the_new_study_and_the_earlier_ones(
    pacs: Pacs, make_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, seen = round_of(pacs, "HIST-1", make_node, tmp_path, monkeypatch)
    assert seen["new"] == [str(pydicom.dcmread(new[0]).StudyInstanceUID)]
    assert seen["history"] == {"20190101": {"baseline": 3}}


def test_a_patient_without_earlier_studies_still_gets_a_round(
    pacs: Pacs, make_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, seen = round_of(pacs, "HIST-3", make_node, tmp_path, monkeypatch)
    assert seen["new"] == [str(pydicom.dcmread(new[0]).StudyInstanceUID)]
    assert seen["history"] == {}


class Unreachable(HistoricAbstractInput):
    address = Address("127.0.0.1", free_port(), "NOBODY")
    fetch_wait_s = 10.0


def instance(date: str, description: str = "s") -> Dataset:
    dataset = make_ct_series(1, rows=2, columns=2, patient_id="HIST-1")[0]
    dataset.StudyDate = date
    dataset.SeriesDescription = description
    return dataset


def test_an_unreachable_pacs_leaves_the_input_empty_to_try_again() -> None:
    historic = Unreachable(InputOptions(ae_title="NODE"))
    assert historic.add_image(instance("20230301")) == 0  # the trigger is not held
    assert historic.validate() is False
    assert historic.state is HistoricInputState.EMPTY
    assert historic.study_date == "20230301"


def test_only_earlier_instances_are_held_by_date_and_series() -> None:
    historic = Unreachable(InputOptions(ae_title="NODE"))
    historic.state = HistoricInputState.FETCHING  # as if fetching
    historic.study_date = "20230301"
    assert historic.add_image(instance("20190101", "baseline")) == 1
    with pytest.raises(InvalidDataset, match="not dated before"):
        historic.add_image(instance("20230301"))
    with pytest.raises(InvalidDataset, match="not dated before"):
        historic.add_image(instance("20240101"))
    assert {
        d: {s: len(v) for s, v in series.items()} for d, series in historic.get_data().items()
    } == {"20190101": {"baseline": 1}}
    assert "20190101" in str(historic)


def test_a_historic_input_needs_an_ae_title_and_an_address() -> None:
    with pytest.raises(IncorrectlyConfigured, match="no AE title"):
        Unreachable(InputOptions())

    class NoAddress(HistoricAbstractInput):
        pass

    with pytest.raises(IncorrectlyConfigured, match="needs an address"):
        NoAddress(InputOptions(ae_title="NODE"))
