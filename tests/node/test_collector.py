"""The collector: which inputs want an instance, and when a patient's inputs are complete."""

from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread

from dicomflow.dicom.factory import make_dataset
from dicomflow.dicom.keys import value_key
from dicomflow.engine.collector import Collector
from dicomflow.node.input import AbstractInput

ALICE, BOB = value_key("ALICE"), value_key("BOB")


class CTByKeyword(AbstractInput):
    required_tags = ["SOPInstanceUID", "PixelData"]
    required_values = {"Modality": "CT"}


class MRByNumber(AbstractInput):
    required_tags = [0x00080018]
    required_values = {0x00080060: "MR"}


class AnyOfTwo(AbstractInput):
    required_values = {"Modality": ["CT", "MR"], "SliceThickness": 1.0}


class ThreeSlices(AbstractInput):
    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        return self.images >= 3


class Exploding(AbstractInput):
    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        raise RuntimeError("validate() has a bug")


def instance(**keywords: Any) -> Dataset:
    return make_dataset(**keywords)


@pytest.mark.parametrize(
    ("keywords", "wanted"),
    [
        ({"Modality": "CT"}, ["ct", "either"]),
        ({"Modality": "MR"}, ["mr", "either"]),
        ({"Modality": "CT", "PixelData": None}, ["either"]),
        ({"Modality": "MR", "SliceThickness": 2.5}, ["mr"]),
        ({"Modality": "US"}, []),
        ({"Modality": None}, []),
        ({"Modality": "CT "}, ["ct", "either"]),
        ({"Modality": "ct"}, []),
    ],
)
def test_instances_go_to_the_inputs_whose_tags_and_values_they_have(
    keywords: dict[str, Any], wanted: list[str]
):
    collector = Collector({"ct": CTByKeyword, "mr": MRByNumber, "either": AnyOfTwo})
    assert collector.wanted_by(instance(**{"SliceThickness": 1.0, **keywords})) == wanted


class Thin(AbstractInput):
    required_values = {"SliceThickness": 1, "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]}


@pytest.mark.parametrize(
    ("keywords", "accepted"),
    [
        ({"SliceThickness": "1.0"}, True),
        ({"SliceThickness": "1"}, True),
        ({"SliceThickness": "1.5"}, False),
        ({"ImageType": ["ORIGINAL", "PRIMARY"]}, False),
    ],
)
def test_numbers_match_by_value_and_multi_values_as_a_whole(
    keywords: dict[str, Any], accepted: bool, tmp_path: Path
):
    path = tmp_path / "instance.dcm"
    dataset = instance(**{"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], **keywords})
    dataset.save_as(path, enforce_file_format=True)
    from_file = dcmread(path)  # DS values keep the string they were read from
    assert Collector({"thin": Thin}).wanted_by(from_file) == (["thin"] if accepted else [])


def add(collector: Collector, patient: str, names: list[str], uid: str) -> Path:
    path = Path(f"/spool/{patient}/{uid}.dcm")
    collector.add(patient, names, uid, instance(SOPInstanceUID=uid), path)
    return path


def test_a_patient_is_complete_when_every_input_validates():
    collector = Collector({"ct": CTByKeyword, "mr": MRByNumber})
    ct = add(collector, ALICE, ["ct"], "1.2.1")
    assert collector.take_if_complete(ALICE) is None
    assert collector.state(ALICE) == {"ct": 1, "mr": 0}
    mr = add(collector, ALICE, ["mr"], "1.2.2")
    assert collector.take_if_complete(ALICE) == {"ct": {"1.2.1": ct}, "mr": {"1.2.2": mr}}
    assert collector.patients() == []
    assert collector.take_if_complete(ALICE) is None, "taken once only"


def test_patients_are_collected_apart():
    collector = Collector({"slices": ThreeSlices})
    for number in range(3):
        add(collector, ALICE, ["slices"], f"1.2.{number}")
    add(collector, BOB, ["slices"], "1.3.1")
    assert collector.take_if_complete(BOB) is None
    taken = collector.take_if_complete(ALICE)
    assert taken is not None
    assert sorted(taken["slices"]) == ["1.2.0", "1.2.1", "1.2.2"]
    assert collector.patients() == [BOB]
    assert collector.state(BOB) == {"slices": 1}


def test_an_instance_sent_twice_counts_once():
    collector = Collector({"slices": ThreeSlices})
    for _ in range(3):
        add(collector, ALICE, ["slices"], "1.2.1")
    assert collector.state(ALICE) == {"slices": 1}
    assert collector.take_if_complete(ALICE) is None


def test_validate_raising_counts_as_not_complete(caplog: pytest.LogCaptureFixture):
    collector = Collector({"ct": CTByKeyword, "broken": Exploding})
    add(collector, ALICE, ["ct", "broken"], "1.2.1")
    assert collector.take_if_complete(ALICE) is None
    assert collector.state(ALICE) == {"ct": 1, "broken": 1}, "nothing is dropped"
    assert "validate() of input 'broken' raised" in caplog.text


def test_an_unknown_patient_is_not_complete():
    collector = Collector({"ct": CTByKeyword})
    assert collector.take_if_complete(ALICE) is None
    assert collector.state(ALICE) == {}
