"""The pipeline library's input API (``dicomflow.server.input``, ``dicomflow.lib.validators``,
``dicomflow.lib.regex``) with real datasets, and in a real round fed by dcmtk storescu."""

import json
import logging
import re
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, MRImageStorage, RTImageStorage

from dicomflow.dicom.factory import make_ct_series, make_dataset, write_series
from dicomflow.dicom.keys import value_key
from dicomflow.engine.collector import Collector
from dicomflow.errors import InvalidKeyError, PipelineDefinitionError
from dicomflow.lib.exceptions import IncorrectlyConfigured, InvalidDataset
from dicomflow.lib.regex import escape_pattern, from_wildcard
from dicomflow.lib.validators import (
    CaselessRegexValidator,
    EqualityValidator,
    NegatedValidator,
    OptionsValidator,
    RegexValidator,
    Validator,
    get_validator_for_value,
)
from dicomflow.node import AbstractPipeline, AbstractProcessor, NoOutput
from dicomflow.server.input import AbstractInput, AbstractInputProxy, DynamicInput

ALICE = value_key("ALICE")


def ct_small() -> Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]


def instance(**keywords: Any) -> Dataset:
    return make_dataset(**keywords)


# -- validators -------------------------------------------------------------------------


def test_a_str_regex_is_searched_with_star_as_a_wildcard() -> None:
    assert RegexValidator("PET")("This string contains PET")
    assert not RegexValidator("PET")("This string contains pet")
    assert RegexValidator("AC*CT")("AC_LOWDOSE_CT")
    assert not RegexValidator(re.compile(r"^\d+$"))("12354Hello1235")
    assert from_wildcard("dicom/*").match("dicom/a_b") is not None
    assert escape_pattern("a[1]_*").match("a[1]_xyz") is not None


def test_caseless_negated_and_options_validators() -> None:
    topogram = NegatedValidator(CaselessRegexValidator("topogram"))
    assert not topogram("TOPOGRAM 1 tm")
    assert topogram("AC_CT")
    assert OptionsValidator([1, 3])(3) and not OptionsValidator([1, 3])(2)
    assert OptionsValidator(["PET", "CT"], RegexValidator)("xxCTxx")
    assert not OptionsValidator(["PET", "CT"], RegexValidator)("MR")


def test_plain_values_mean_equality_of_uids_multi_values_and_numbers() -> None:
    dataset = ct_small()
    assert EqualityValidator(CTImageStorage)(dataset.SOPClassUID)
    assert EqualityValidator("1.2.840.10008.5.1.4.1.1.2")(dataset.SOPClassUID)
    assert EqualityValidator(["ORIGINAL", "PRIMARY", "AXIAL"])(dataset.ImageType)
    assert not EqualityValidator(["ORIGINAL", "PRIMARY"])(dataset.ImageType)
    assert not get_validator_for_value("123")(123)
    validator = RegexValidator("x")
    assert get_validator_for_value(validator) is validator
    assert isinstance(get_validator_for_value(re.compile("CT")), RegexValidator)


def test_required_values_accept_patterns_and_validators_on_a_real_dataset() -> None:
    class Axial(AbstractInput):
        required_values = {
            "Modality": re.compile("^C"),
            0x00080016: OptionsValidator([RTImageStorage, CTImageStorage]),
            "ImageType": RegexValidator("AXIAL"),  # multi-value as its DICOM text
            "PatientName": CaselessRegexValidator(r"^compressed*\^ct"),  # a PersonName
        }

    class Mr(AbstractInput):
        required_values = {"SOPClassUID": MRImageStorage}

    dataset = ct_small()
    assert Axial.validate_image(dataset)
    assert not Mr.validate_image(dataset)
    dataset.Modality = "MR"
    assert not Axial.validate_image(dataset)


def test_a_failing_validator_is_a_mismatch_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Validator):
        def __call__(self, target: Any) -> bool:
            raise ZeroDivisionError("bug in a validator")

    class Strict(AbstractInput):
        required_values = {"Modality": Broken()}

    assert Collector({"strict": Strict}).wanted_by(ct_small()) == []
    assert "bug in a validator" in caplog.text


# -- the input as a collection ------------------------------------------------------------


class Counting(AbstractInput):
    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        return len(self) >= 2


def test_add_image_returns_one_and_a_resent_instance_counts_once() -> None:
    held = Counting()
    dataset = instance(SOPInstanceUID="1.2.3.1")
    assert held.add_image(dataset) == 1
    assert held.add_image(dataset) == 1
    assert (held.images, len(held)) == (1, 1)
    assert not held.validate()
    held.add_image(instance(SOPInstanceUID="1.2.3.2"))
    assert held.validate()
    assert dataset in held and "1.2.3.1" in held
    assert [d.SOPInstanceUID for d in held] == ["1.2.3.1", "1.2.3.2"]
    assert [d.SOPInstanceUID for d in held] == [d.SOPInstanceUID for d in held.get_datasets()]


def test_an_instance_not_meeting_the_requirements_raises_invalid_dataset() -> None:
    class Ct(AbstractInput):
        required_values = {"Modality": "CT"}

    with pytest.raises(InvalidDataset, match="lacks a required tag or value"):
        Ct().add_image(instance(Modality="MR"))
    with pytest.raises(InvalidDataset):
        Ct().add_image(instance(SOPInstanceUID=None))


def test_options_and_the_subclass_init_of_the_original_examples(tmp_path: Path) -> None:
    class RTConsumer(AbstractInput):
        required_values = {0x00080016: OptionsValidator([RTImageStorage, CTImageStorage])}

        def __init__(self, options: AbstractInput.Options = AbstractInput.Options()):  # noqa: B008  (the original examples' signature)
            super().__init__(options)
            self.has_rt = False

        def add_image(self, dicom: Dataset) -> int:
            added = super().add_image(dicom)
            self.has_rt |= added != 0 and dicom.SOPClassUID == RTImageStorage
            return added

    logger = logging.getLogger("mine")
    options = AbstractInput.Options(ae_title="NODE", logger=logger, data_directory=tmp_path)
    consumer = RTConsumer(options)
    assert (consumer.options.ae_title, consumer.logger) == ("NODE", logger)
    assert consumer.add_image(instance(SOPClassUID=RTImageStorage)) == 1
    assert consumer.has_rt
    assert consumer.get_path(instance(SOPInstanceUID="1.2.9")) == tmp_path / "1.2.9.dcm"


def test_get_path_never_uses_a_raw_value(tmp_path: Path) -> None:
    held = Counting(AbstractInput.Options(data_directory=tmp_path))
    with pytest.raises(InvalidKeyError):
        held.get_path(instance(SOPInstanceUID="../../etc/passwd"))
    with pytest.raises(IncorrectlyConfigured, match="no data_directory"):
        Counting().get_path(instance())
    spooled = tmp_path / "spool" / "1.2.5.dcm"
    held.offer(instance(SOPInstanceUID="1.2.5", Modality="../x"), spooled)
    assert held.get_path(instance(SOPInstanceUID="1.2.5")) == spooled


def test_an_input_on_its_own_keeps_its_instances_in_its_data_directory(tmp_path: Path) -> None:
    options = AbstractInput.Options(data_directory=tmp_path / "input")
    held = Counting(options)
    first, second = instance(SOPInstanceUID="1.2.6.1"), instance(SOPInstanceUID="1.2.6.2")
    assert held.add_images([first, second]) == 2
    assert str(held) == "Counting - 2 images - Valid: True"
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == ["1.2.6.1.dcm", "1.2.6.2.dcm"]
    reloaded = Counting(options)  # as after a restart of a program using the input
    assert sorted(str(d.SOPInstanceUID) for d in reloaded) == ["1.2.6.1", "1.2.6.2"]
    assert reloaded.clean_up() == 2
    assert list((tmp_path / "input").iterdir()) == []
    with pytest.raises(IncorrectlyConfigured, match="lazy"):
        Counting(AbstractInput.Options(lazy=True)).add_image(first)


def test_a_node_offered_instance_is_never_written_nor_deleted_by_the_input(
    tmp_path: Path,
) -> None:
    spooled = tmp_path / "spool" / "1.2.8.dcm"
    spooled.parent.mkdir()
    spooled.write_bytes(b"kept")
    held = Counting(AbstractInput.Options(data_directory=tmp_path / "input"))
    held.offer(instance(SOPInstanceUID="1.2.8"), spooled, checked=True)
    held.clean_up()
    assert spooled.read_bytes() == b"kept"
    assert not (tmp_path / "input" / "1.2.8.dcm").exists()


def test_the_grinder_receives_the_input_itself_re_iterable_and_sized() -> None:
    seen: list[Any] = []

    def grinder(datasets: Any) -> tuple[int, int, int]:
        seen.append(datasets)
        return len(datasets), len(list(datasets)), len(list(datasets))

    class Ground(Counting):
        image_grinder = staticmethod(grinder)

    held = Ground()
    for number in range(3):
        held.add_image(instance(SOPInstanceUID=f"1.2.7.{number}"))
    assert held.get_data() == (3, 3, 3)
    assert seen == [held]
    assert held.grind() == (3, 3, 3)


def test_enforce_single_series_refuses_a_second_series() -> None:
    class OneSeries(AbstractInput):
        enforce_single_series = True

    first, second = make_ct_series(1, seed=1), make_ct_series(1, seed=2)
    held = OneSeries()
    with pytest.raises(InvalidDataset):
        held.add_image(instance(SeriesInstanceUID=None))
    assert held.single_series_uid is None
    stored = OneSeries(AbstractInput.Options(data_directory=Path("/nonexistent")))
    with pytest.raises(InvalidKeyError):
        stored.add_image(instance(SOPInstanceUID="../x"))
    assert (stored.single_series_uid, len(stored)) == (None, 0), "not held: no series set"
    held.add_image(first[0])
    with pytest.raises(InvalidDataset, match="another series"):
        held.add_image(second[0])
    assert len(held) == 1


# -- DynamicInput -------------------------------------------------------------------------


class SeriesInputs(DynamicInput):
    required_values = {"Modality": "CT"}
    image_grinder = staticmethod(lambda leaf: sorted(str(d.SOPInstanceUID) for d in leaf))

    def validate(self) -> bool:
        return len(self.data) == 2 and len({len(leaf) for leaf in self.data.values()}) == 1


def test_dynamic_input_keeps_one_leaf_per_series() -> None:
    a = make_ct_series(2, series_instance_uid="1.2.40.1")
    b = make_ct_series(2, series_instance_uid="1.2.40.2")
    held = SeriesInputs()
    for dataset in [a[0], b[0], a[1]]:
        assert held.add_image(dataset) == 1
    assert not held.validate()
    held.add_image(b[1])
    assert held.validate() and len(held) == 4 and held.images == 4
    assert sorted(held.data) == ["1.2.40.1", "1.2.40.2"]
    data = held.get_data()
    assert data["1.2.40.1"] == sorted(str(d.SOPInstanceUID) for d in a)
    assert all(d in held for d in a + b)


def test_dynamic_input_keys_are_never_paths() -> None:
    class BySeriesNumber(DynamicInput):
        separator_tag = "SeriesDescription"

    held = BySeriesNumber()
    held.add_image(instance(SeriesDescription="../../x"))
    assert list(held.data) == ["../../x"]  # a dict key in memory only
    with pytest.raises(InvalidDataset):
        held.add_image(instance(SeriesDescription=None))


# -- InputA | InputB ----------------------------------------------------------------------


class PETInput(AbstractInput):
    required_values = {"Modality": "PT"}


class NMInput(AbstractInput):
    required_values = {"Modality": "NM"}


class MRInput(AbstractInput):
    required_values = {"Modality": "MR"}


def test_or_makes_an_input_satisfied_by_either() -> None:
    either = PETInput | NMInput
    assert issubclass(either, AbstractInputProxy)
    assert (either | MRInput).type_options == [PETInput, NMInput, MRInput]
    assert (PETInput | (NMInput | MRInput)).type_options == [PETInput, NMInput, MRInput]
    assert either.type_options == [PETInput, NMInput], "not changed by later unions"
    held = either(AbstractInput.Options(ae_title="NODE"))
    assert (len(held), held.images, held.validate()) == (0, 0, False)
    with pytest.raises(InvalidDataset):
        held.add_image(instance(Modality="CT"))
    assert held.add_image(instance(Modality="NM")) == 1
    assert type(held) is NMInput and held.options.ae_title == "NODE" and len(held) == 1
    with pytest.raises(InvalidDataset):
        held.add_image(instance(Modality="PT"))


def test_or_with_other_types_is_a_type_annotation() -> None:
    annotation = PETInput | None
    assert not (isinstance(annotation, type) and issubclass(annotation, AbstractInput))


def test_a_bad_union_is_named_when_the_pipeline_is_loaded() -> None:
    class Dated(AbstractInput):
        enforce_single_study_date = True

    with pytest.raises(IncorrectlyConfigured):
        (Dated | PETInput)()
    with pytest.raises(PipelineDefinitionError, match=r'Input "x".*enforce_single_study_date'):
        (Dated | PETInput).check_definition("x")

    class WithAType(AbstractInputProxy):
        type_options = [PETInput, int]  # type: ignore[list-item]

    with pytest.raises(PipelineDefinitionError, match="not an AbstractInput"):
        WithAType.check_definition("x")
    with pytest.raises(IncorrectlyConfigured, match="no input to choose from"):
        type("Empty", (AbstractInputProxy,), {"type_options": []})()


# -- the collector: headers, refusals, restarts -------------------------------------------


class OneSeriesOfTwo(AbstractInput):
    required_tags = ["SOPInstanceUID", "PixelData"]  # checked on the full dataset
    enforce_single_series = True

    def validate(self) -> bool:
        return len(self) >= 2


def feed(collector: Collector, datasets: list[Dataset], tmp_path: Path) -> list[str]:
    from dicomflow.dicom.header import header_of

    taken = []
    for dataset in datasets:
        uid = str(dataset.SOPInstanceUID)
        names = collector.wanted_by(dataset)
        collector.add(ALICE, names, uid, header_of(dataset), tmp_path / f"{uid}.dcm")
        taken.append(",".join(names))
    return taken


def test_an_instance_an_input_refuses_is_kept_and_offered_to_the_next_round(
    tmp_path: Path,
) -> None:
    first = make_ct_series(2, series_instance_uid="1.2.50.1")
    second = make_ct_series(2, series_instance_uid="1.2.50.2")
    collector = Collector({"ct": OneSeriesOfTwo})
    feed(collector, [first[0], second[0], first[1], second[1]], tmp_path)
    members = collector.take_if_complete(ALICE)
    assert members is not None
    assert sorted(members["ct"]) == sorted(str(d.SOPInstanceUID) for d in first)
    assert collector.state(ALICE) == {"ct": 2}, "the refused series waits for its round"
    again = collector.take_if_complete(ALICE)
    assert again is not None
    assert sorted(again["ct"]) == sorted(str(d.SOPInstanceUID) for d in second)


def test_headers_offered_by_the_node_fill_dynamic_and_union_inputs(tmp_path: Path) -> None:
    pet = make_ct_series(1, modality="NM", seed=3)
    series = make_ct_series(2, seed=4) + make_ct_series(2, seed=5)
    collector = Collector({"series": SeriesInputs, "either": PETInput | NMInput})
    assert feed(collector, pet + series, tmp_path) == ["either", *["series"] * 4]
    described = {state.name: state.instances for state in collector.describe(ALICE)}
    assert described == {"series": 4, "either": 1}
    assert len(collector.headers(ALICE)) == 5
    members = collector.take_if_complete(ALICE)
    assert members is not None and len(members["series"]) == 4
    # a restart offers the spool's instances again, in order: the same state follows
    restarted = Collector({"series": SeriesInputs, "either": PETInput | NMInput})
    feed(restarted, pet + series, tmp_path)
    assert restarted.take_if_complete(ALICE) == members


# -- end to end: storescu -> node -> round ------------------------------------------------


class AcCt(AbstractInput):
    required_tags = ["SOPInstanceUID", "PixelData"]
    required_values = {
        "Modality": re.compile("^CT$"),
        "SeriesDescription": NegatedValidator(CaselessRegexValidator("topogram")),
    }

    def validate(self) -> bool:
        return len(self) >= 2


class TwoMrSeries(DynamicInput):
    required_values = {"Modality": "MR"}

    def validate(self) -> bool:
        return len(self.data) == 2


class RecordingPipeline(AbstractPipeline):
    ae_title = "DICOMFLOW"
    input = {"ct": AcCt, "mr": TwoMrSeries, "either": PETInput | NMInput}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            ct = input_container["ct"]
            record = {
                "ct": [len(ct), len(list(ct)), len(list(ct))],
                "ct_descriptions": sorted({str(d.SeriesDescription) for d in ct}),
                "mr": {key: len(list(leaf)) for key, leaf in input_container["mr"].items()},
                "either": [str(d.Modality) for d in input_container["either"]],
                "pixels": all("PixelData" in d for d in ct),
            }
            records = self.working_directory.parents[2].parent / "records"
            (records / f"{self.round_id}.json").write_text(json.dumps(record))
            return NoOutput()


def series(count: int, description: str, **keywords: Any) -> list[Dataset]:
    datasets = make_ct_series(count, patient_id="P7", **keywords)
    for dataset in datasets:
        dataset.SeriesDescription = description
    return datasets


def test_validators_dynamic_and_union_inputs_in_a_real_round(make_node, tmp_path: Path) -> None:
    from support import storescu, wait_for  # not at the top: the worker imports this module

    mr_a = series(2, "T1", modality="MR", series_instance_uid="1.2.60.1")
    mr_b = series(1, "T2", modality="MR", series_instance_uid="1.2.60.2")
    datasets = [
        *series(2, "AC_CT", seed=6),
        *series(1, "Topogram 1", seed=7),
        *mr_a,
        *mr_b,
        *series(1, "WB", modality="NM", seed=8),
    ]
    files = write_series(datasets, tmp_path / "sent")
    node = make_node(RecordingPipeline)
    storescu(node.port, files)
    records = tmp_path / "records"
    wait_for(lambda: any(records.glob("*.json")), what="the round's record")
    [record_file] = records.glob("*.json")
    record = json.loads(record_file.read_text())
    assert record == {
        "ct": [2, 2, 2],
        "ct_descriptions": ["AC_CT"],
        "mr": {"1.2.60.1": 2, "1.2.60.2": 1},
        "either": ["NM"],
        "pixels": True,
    }
    wait_for(lambda: node.counters.rounds_succeeded == 1, what="the round's success")


class OneSeriesPipeline(AbstractPipeline):
    input = {"ct": OneSeriesOfTwo}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            uids = sorted({str(d.SeriesInstanceUID) for d in input_container["ct"]})
            records = self.working_directory.parents[2].parent / "records"
            (records / f"{self.round_id}.json").write_text(json.dumps(uids))
            return NoOutput()


def test_a_series_refused_by_a_single_series_input_gets_its_own_round(
    make_node, tmp_path: Path
) -> None:
    from support import storescu, wait_for

    first = series(2, "A", series_instance_uid="1.2.70.1")
    second = series(2, "B", series_instance_uid="1.2.70.2")
    files = write_series([first[0], second[0], first[1], second[1]], tmp_path / "sent")
    node = make_node(OneSeriesPipeline)
    storescu(node.port, files)
    records = tmp_path / "records"
    wait_for(lambda: len(list(records.glob("*.json"))) == 2, what="two rounds")
    seen = sorted(json.loads(path.read_text()) for path in records.glob("*.json"))
    assert seen == [["1.2.70.1"], ["1.2.70.2"]]
