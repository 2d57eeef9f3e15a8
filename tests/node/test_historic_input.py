"""``HistoricAbstractInput`` with Orthanc as the PACS: a patient's new study arrives
(storescu), the input finds the patient's earlier studies in Orthanc (C-FIND), has them
moved to the node (C-MOVE), and the round sees the new study and the earlier ones."""

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest
from historic_pipelines import PORT_VARIABLE, HistoricPipeline, PriorStudies
from pydicom import Dataset

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


def test_the_round_sees_the_new_study_and_the_earlier_ones(
    make_node: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node_port = free_port()
    pacs = OrthancPeer(
        tmp_path / "orthanc", modalities={"node": f"DICOMFLOW@127.0.0.1:{node_port}"}
    )
    try:
        monkeypatch.setenv(PORT_VARIABLE, str(pacs.dicom_port))
        monkeypatch.setattr(
            PriorStudies,
            "address",
            PriorStudies.address.__class__("127.0.0.1", pacs.dicom_port, pacs.ae_title),
        )
        earlier = study(tmp_path / "2019", "20190101", "baseline", 3)
        later = study(tmp_path / "2024", "20240601", "future", 1)  # after the new one
        other = study(tmp_path / "other", "20180101", "other", 1, patient="HIST-2")
        for path in earlier + later + other:
            pacs.rest("POST", "/instances", path.read_bytes())
        new = study(tmp_path / "new", "20230301", "current", 2)
        make_node(HistoricPipeline, port=node_port)
        storescu(node_port, new, aec="DICOMFLOW")
        record = tmp_path / "records" / "historic.json"
        wait_for(record.exists, timeout_s=60, what="the round with the historic input")
        seen = json.loads(record.read_text())
        assert seen["new"] == [str(pydicom.dcmread(new[0]).StudyInstanceUID)]
        assert seen["history"] == {"20190101": {"baseline": 3}}
    finally:
        pacs.stop()


class Unreachable(HistoricAbstractInput):
    address = PriorStudies.address.__class__("127.0.0.1", free_port(), "NOBODY")
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
