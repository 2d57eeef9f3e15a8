"""The pipeline library's image trees, identity mapping, anonymization and DicomSeries."""

import copy
import logging
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from dicomflow.data_structures.image_tree import (
    DicomTree,
    IdentityMapping,
    ImageTreeInterface,
    PatientTree,
    SeriesTree,
    StudyTree,
)
from dicomflow.dicom.anonymization import anonymize_dataset, anonymize_dicom_tree
from dicomflow.dicom.factory import make_ct_series
from dicomflow.dicom.keys import value_key
from dicomflow.dicom.series import DicomSeries
from dicomflow.errors import InvalidKeyError


def two_patients() -> list[Dataset]:
    """Patient A: one study with two series (2 + 1 instances); patient B: one series of 2."""
    study = generate_uid()
    first = make_ct_series(2, patient_id="A", patient_name="Alpha^A", study_instance_uid=study)
    second = make_ct_series(1, patient_id="A", patient_name="Alpha^A", study_instance_uid=study)
    second[0].SeriesDescription = "Second"
    other = make_ct_series(2, patient_id="B", patient_name="Beta^B")
    return first + second + other


def test_dicom_tree_counts_and_iterates_every_level() -> None:
    datasets = two_patients()
    tree = DicomTree(datasets)
    assert (tree.images, len(tree)) == (5, 5)
    assert (tree.num_patients(), tree.num_studies(), tree.num_series()) == (2, 2, 3)
    assert {ds.SOPInstanceUID for ds in tree} == {ds.SOPInstanceUID for ds in datasets}
    patient = tree["A"]
    assert isinstance(patient, PatientTree) and patient.images == 3
    assert all(isinstance(series, SeriesTree) for series in tree.series())
    assert all(isinstance(study, StudyTree) for study in tree.studies())
    assert datasets[0][0x00080018] in next(tree.series())  # a DataElement is looked up by value


def test_dicom_tree_describes_itself() -> None:
    text = str(DicomTree(two_patients()))
    assert text.startswith("Dicom Tree with 5 images\n  Patient StudyTree of Alpha^A with 3 images")
    assert "      Tree of Second with 1 images\n" in text


@pytest.mark.parametrize(
    ("tree", "missing"),
    [(DicomTree, "PatientID"), (PatientTree, "StudyInstanceUID"), (SeriesTree, "SOPInstanceUID")],
)
def test_trees_refuse_an_instance_missing_their_key(
    tree: type[ImageTreeInterface], missing: str
) -> None:
    ds = make_ct_series(1)[0]
    delattr(ds, missing)
    with pytest.raises(ValueError, match=missing):
        tree(ds)


def test_trees_refuse_instances_of_another_group_and_duplicates() -> None:
    a, b = make_ct_series(1, patient_id="A")[0], make_ct_series(1, patient_id="B")[0]
    with pytest.raises(KeyError):
        PatientTree(a).add_image(b)
    with pytest.raises(KeyError):
        StudyTree(a).add_image(b)
    with pytest.raises(KeyError):
        SeriesTree(a).add_image(b)
    with pytest.raises(ValueError, match="already"):
        DicomTree(a).add_image(a)


def test_trim_tree_removes_instances_and_empty_subtrees() -> None:
    tree = DicomTree(two_patients())
    assert tree.trim_tree(lambda ds: ds.PatientID == "B") == 3
    assert (tree.images, tree.num_patients()) == (2, 1)


def test_delitem_and_setitem_keep_counts_and_types() -> None:
    series = make_ct_series(2)
    tree = SeriesTree(series)
    del tree[series[0].SOPInstanceUID]
    assert tree.images == 1 and series[0].SOPInstanceUID not in tree
    with pytest.raises(TypeError):
        tree[1] = series[0]  # type: ignore[index]
    with pytest.raises(TypeError):
        tree["1.2"] = 1  # type: ignore[assignment]


def test_save_tree_and_discover_round_trip(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datasets = two_patients()
    target = tmp_path / "tree"
    DicomTree(datasets).save_tree(target)
    assert sorted(p.name for p in target.iterdir()) == sorted([value_key("A"), value_key("B")])
    (target / "notes.txt").write_text("not DICOM")
    found = DicomTree()
    with caplog.at_level(logging.ERROR, logger="dicomflow"):
        found.discover(target)
    assert "notes.txt" in caplog.text
    assert sorted(ds.SOPInstanceUID for ds in found) == sorted(ds.SOPInstanceUID for ds in datasets)


def test_save_tree_of_one_instance_writes_a_file(tmp_path: Path) -> None:
    ds = make_ct_series(1)[0]
    DicomTree(ds).save_tree(tmp_path / "one.dcm")
    assert dcmread(tmp_path / "one.dcm").SOPInstanceUID == ds.SOPInstanceUID
    DicomTree(ds).save_tree(tmp_path)
    assert (tmp_path / f"{ds.SOPInstanceUID}.dcm").is_file()


def test_save_tree_never_builds_a_path_from_hostile_values(tmp_path: Path) -> None:
    hostile = make_ct_series(1, patient_id="../../escape")[0]
    benign = make_ct_series(1, patient_id="B")[0]
    DicomTree([hostile, benign]).save_tree(tmp_path / "tree")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"]
    assert (tmp_path / "tree" / value_key("../../escape")).is_file()
    bad = make_ct_series(2)
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        bad[0].SOPInstanceUID = "../../x"
    with pytest.raises(InvalidKeyError):
        SeriesTree(bad).save_tree(tmp_path / "bad")
    assert not list((tmp_path / "bad").iterdir())


def test_identity_mapping_numbers_patients_and_maps_every_uid() -> None:
    datasets = two_patients()
    mapping = IdentityMapping()
    mapping.fill_from_DicomTree(DicomTree(datasets), "pp_")
    assert mapping.PatientMapping == {"A": "pp_0", "B": "pp_1"}
    assert (len(mapping.StudyUIDMapping), len(mapping.SeriesUIDMapping)) == (2, 3)
    uid = datasets[0].SOPInstanceUID
    assert mapping[uid] == mapping.get_mapping(str(uid)) != uid
    assert mapping.get_mapping(generate_uid()) is None
    with pytest.raises(KeyError):
        mapping[generate_uid()]
    assert mapping.add_Patient("A") == "pp_0"
    assert str(mapping).startswith("Identity Mapping\n  Patient Mapping\n")


def test_anonymize_dicom_tree_replaces_identity_and_uids_consistently() -> None:
    datasets = two_patients()
    reference = Dataset()
    reference.ReferencedSOPInstanceUID = datasets[1].SOPInstanceUID
    reference.ReferringPhysicianName = "Doctor^Who"
    datasets[0].ReferencedImageSequence = Sequence([reference])
    originals = copy.deepcopy(datasets)
    tree = DicomTree(datasets)
    mapping = IdentityMapping()
    mapping.fill_from_DicomTree(tree)
    tree.map(anonymize_dicom_tree(mapping, "Anon"), mapping)
    first, second = datasets[0], datasets[1]
    assert (first.PatientID, first.PatientName, first.StudyID) == (
        "AnonymizedPatientID_0",
        "Anon_0",
        "Study_0",
    )
    assert first.SOPInstanceUID == mapping[originals[0].SOPInstanceUID]
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    item = first.ReferencedImageSequence[0]
    assert item.ReferencedSOPInstanceUID == second.SOPInstanceUID
    assert item.ReferringPhysicianName == "Anon_Referring Physician's Name"
    assert first.StudyInstanceUID == second.StudyInstanceUID != originals[0].StudyInstanceUID
    assert datasets[3].PatientID == "AnonymizedPatientID_1"
    assert set(tree.data) == {"AnonymizedPatientID_0", "AnonymizedPatientID_1"}


def test_anonymize_dicom_tree_names_an_unmapped_patient() -> None:
    with pytest.raises(KeyError, match="not in the identity mapping"):
        anonymize_dicom_tree(IdentityMapping())(make_ct_series(1)[0])


def test_anonymize_dataset_keeps_uids() -> None:
    ds = make_ct_series(1, patient_id="X", patient_name="Real^Name")[0]
    ds.file_meta = ds.file_meta or FileMetaDataset()
    uid = ds.SOPInstanceUID
    anonymize_dataset(ds, "Anon", "0042")
    assert (ds.PatientName, ds.PatientID, ds.SOPInstanceUID) == ("Anon_0042", "0042", uid)


def test_dicom_series_reads_and_writes_shared_and_varying_tags() -> None:
    series = make_ct_series(3, rows=4, columns=4)
    dicom_series = DicomSeries(list(reversed(series)))
    assert [ds.InstanceNumber for ds in dicom_series] == [1, 2, 3]
    assert dicom_series[0x00280010].value == 4  # type: ignore[union-attr]
    assert len(dicom_series[0x00080018]) == 3  # type: ignore[arg-type]
    assert dicom_series.shared_tag(0x00280010) and not dicom_series.shared_tag(0x00080018)
    dicom_series["PatientName"] = "New^Name"
    assert all(ds.PatientName == "New^Name" for ds in series)
    with pytest.raises(ValueError):
        dicom_series[0x00080018] = [generate_uid()]
    with pytest.raises(TypeError):
        dicom_series[0x00080018] = generate_uid()
    with pytest.raises(ValueError):
        DicomSeries([])
