"""Every Table E.1-1 attribute in pydicom's test corpus, checked against its action.

For the Basic Profile alone and for each option, every readable file of pydicom's
bundled corpus is de-identified and walked (nested sequences and file meta included);
each attribute that has a row is checked against the row's action, UIDs against one
pseudonym map shared by all files. A recipe with one mutated row must fail the check.
"""

from __future__ import annotations

import copy
import secrets

import pytest
from deid_support import Conformance, corpus, keyword
from pydicom import Dataset

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Option, Pseudonymizer
from dicomflow.dicom.deid import deidentifier as deidentifier_module
from dicomflow.dicom.deid.profile import Action
from dicomflow.errors import DeidRefusedError

PROFILES = [(), *((option.value,) for option in Option)]


@pytest.fixture(scope="module")
def files() -> list[tuple[str, Dataset]]:
    readable, unreadable = corpus()
    print(f"\ncorpus: {len(readable)} readable files, {unreadable} unreadable skipped")
    assert len(readable) > 150
    return readable


@pytest.fixture(scope="module")
def key() -> bytes:
    return secrets.token_bytes(32)


def _safe_private(files: list[tuple[str, Dataset]]) -> list[str]:
    """Three private attributes of the corpus, as a safe-private list."""
    found: set[str] = set()
    for _, dataset in files:
        for element in dataset:
            creator = element.private_creator if element.tag.is_private else None
            if creator and element.tag.element > 0xFF and creator.isprintable():
                found.add(
                    f"{creator.strip()},{element.tag.group:04X},{element.tag.element & 0xFF:02X}"
                )
    return sorted(found)[:3]


def _profile(options: tuple[str, ...], files: list[tuple[str, Dataset]]) -> DeidProfile:
    safe = _safe_private(files) if Option.RETAIN_SAFE_PRIVATE in options else []
    return DeidProfile.from_names("basic", options, safe)


def run_corpus(
    files: list[tuple[str, Dataset]], profile: DeidProfile, deidentifier: Deidentifier
) -> tuple[Conformance, int]:
    """Check every file; those refused for burned-in text are checked without pixels."""
    conformance = Conformance(profile, deidentifier.pseudonymizer)
    refused = 0
    for name, dataset in files:
        try:
            conformance.check(name, dataset, deidentifier)
        except DeidRefusedError:
            refused += 1
            headers = copy.deepcopy(dataset)
            for keyword_ in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
                headers.pop(keyword_, None)
            conformance.check(name, headers, deidentifier)
    return conformance, refused


@pytest.mark.parametrize("options", PROFILES, ids=lambda o: o[0] if o else "basic")
def test_every_row_follows_its_action(
    options: tuple[str, ...], files: list[tuple[str, Dataset]], key: bytes
) -> None:
    profile = _profile(options, files)
    deidentifier = Deidentifier(profile, Pseudonymizer(key))
    conformance, refused = run_corpus(files, profile, deidentifier)
    counts = ", ".join(f"{action} {n}" for action, n in sorted(conformance.counts.items()))
    print(f"\n{profile.description()}: {counts}; {refused} refused for pixels, headers checked")
    assert not conformance.failures, "\n".join(conformance.failures[:40])
    for action in ("X", "Z", "D", "U"):
        assert conformance.counts[action] > 0 or (
            action == "U" and Option.RETAIN_UIDS in profile.options
        )
    if Option.RETAIN_UIDS not in profile.options:
        assert len(set(conformance.uid_map.values())) == len(conformance.uid_map)  # one-to-one


def test_references_between_files_keep_pointing(
    files: list[tuple[str, Dataset]], key: bytes
) -> None:
    """A ReferencedSOPInstanceUID naming another file's instance names its pseudonym."""
    deidentifier = Deidentifier(DeidProfile(), Pseudonymizer(key))
    instances = {str(ds.SOPInstanceUID): name for name, ds in files if "SOPInstanceUID" in ds}
    results = {}
    for name, dataset in files:
        copied = copy.deepcopy(dataset)
        copied.pop("PixelData", None)
        deidentifier.deidentify(copied)
        results[name] = copied
    pseudonymizer, linked = deidentifier.pseudonymizer, 0
    for name, dataset in files:
        survivors = set(_references(results[name]))
        assert not survivors & instances.keys()
        for reference in _references(dataset):
            target = instances.get(reference)
            if target is not None and target != name:
                pseudonym = str(results[target].SOPInstanceUID)
                assert pseudonymizer.uid(reference) == pseudonym
                linked += pseudonym in survivors
    print(f"\n{linked} references to another file's instance followed")
    assert linked > 0


def _references(dataset: Dataset) -> list[str]:
    found: list[str] = []
    for element in dataset.iterall():
        if element.keyword == "ReferencedSOPInstanceUID" and element.value:
            found.append(str(element.value))
    return found


MUTATIONS = [
    (0x00081030, Action.KEEP),  # StudyDescription: X kept
    (0x00080018, Action.KEEP),  # SOPInstanceUID: U kept
    (0x00080020, Action.REMOVE),  # StudyDate: Z removed
    (0x00080080, Action.ZERO),  # InstitutionName: D blanked
]


@pytest.mark.parametrize(
    "tag,action", MUTATIONS, ids=lambda v: keyword(v) if isinstance(v, int) else v.name
)
def test_a_mutated_recipe_fails_the_check(
    tag: int, action: Action, files: list[tuple[str, Dataset]], key: bytes
) -> None:
    profile = DeidProfile()
    deidentifier = Deidentifier(profile, Pseudonymizer(key))
    actions = dict(profile.actions())
    actions[tag] = action
    deidentifier._recipe = deidentifier_module.recipe_from_actions(actions)
    conformance, _ = run_corpus(files[:80], profile, deidentifier)
    assert any(keyword(tag) in failure for failure in conformance.failures)
