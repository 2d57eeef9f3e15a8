"""One Deidentifier shared by threads: the same results as one thread, deid's patch of
FileDataset.__hash__ undone, and no dataset kept alive by a cache."""

from __future__ import annotations

import copy
import gc
import io
import secrets
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
from deid.dicom import parser, tags
from deid.dicom.fields import _get_fields_inner
from pydicom import Dataset, FileDataset, dcmread
from pydicom.data import get_testdata_file

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Pseudonymizer


@pytest.fixture(scope="module")
def deidentifier() -> Deidentifier:
    profile = DeidProfile.from_names(options=["retain_longitudinal_modified_dates"])
    return Deidentifier(profile, Pseudonymizer(secrets.token_bytes(32)))


def _instances(count: int) -> list[Dataset]:
    base = dcmread(get_testdata_file("CT_small.dcm"))
    instances = []
    for number in range(count):
        dataset = copy.deepcopy(base)
        dataset.PatientID = f"P{number % 3}"
        dataset.SOPInstanceUID = f"1.2.826.0.1.{number}"
        dataset.StudyDate = f"2024{1 + number % 12:02d}15"
        instances.append(dataset)
    return instances


def test_threads_get_the_results_of_one_thread(deidentifier: Deidentifier) -> None:
    serial = _instances(24)
    for dataset in serial:
        deidentifier.deidentify(dataset)
    parallel = _instances(24)
    with ThreadPoolExecutor(4) as pool:
        identities = list(pool.map(deidentifier.deidentify, parallel))
    for one, other, identity in zip(serial, parallel, identities, strict=True):
        assert one == other
        assert identity.sop_instance_uid == other.SOPInstanceUID
    with pytest.raises(TypeError):
        hash(dcmread(get_testdata_file("CT_small.dcm")))  # deid's id() hash is undone


def test_no_dataset_outlives_its_deidentification(deidentifier: Deidentifier) -> None:
    alive = []
    for dataset in _instances(60):
        deidentifier.deidentify(dataset)
        alive.append(weakref.ref(dataset))
        del dataset
    gc.collect()
    assert [ref for ref in alive if ref() is not None] == []
    assert _get_fields_inner.cache_info().currsize == 0
    assert FileDataset.__hash__ is None


def test_the_cached_tag_lookup_gives_what_deids_own_lookup_gives() -> None:
    """deid's keyword → tag lookup is cached (it scans the whole data dictionary on every
    replaced value); the de-identified bytes are the same with deid's own lookup."""
    source = dcmread(get_testdata_file("rtplan.dcm"))
    profile = DeidProfile.from_names("basic", ["clean_descriptors"])
    maker = Deidentifier(profile, Pseudonymizer(b"t" * 32))

    def written() -> bytes:
        dataset = copy.deepcopy(source)
        maker.deidentify(dataset)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    cached = written()
    assert hasattr(parser.get_tag, "cache_info")
    patched, parser.get_tag = parser.get_tag, tags.get_tag
    try:
        assert written() == cached
    finally:
        parser.get_tag = patched
