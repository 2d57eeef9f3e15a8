"""Cost of one C-FIND answer: the node's encoder against pydicom, per pending response.

Encodes study-level answers (the 14 return keys of bench/catalog.py's findscu queries)
from catalog DICOM JSON, both ways, and prints microseconds per answer:

- ``encoder``: :class:`dicomflow.dicom.response_encoder.ResponsePlan` (what the lean
  acceptor sends);
- ``pydicom``: ``response_identifier`` (``Dataset.from_json``), trimmed to the keys and
  encoded by pydicom (what it sent before, and still sends for what the encoder leaves).

With ``--catalog FILE`` the matches are also every study of that catalog (SQLite, e.g.
one ``dicomflow cod reindex`` made), read a page at a time through the engine's
provider, so the figure includes the catalog; with ``--findscu`` as well, dcmtk
``findscu`` asks the lean acceptor for them all over loopback (one association, one
C-FIND), the provider's answers sent as they encode or as datasets: end to end, wire
and peer included. Synthetic matches: ``--matches`` (a tenth with non-ASCII names).

    .venv/bin/python bench/cfind_answers.py [--matches 5000] [--catalog FILE [--findscu]]
"""

import argparse
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from pydicom import Dataset

from dicomflow.cod.catalog import open_catalog
from dicomflow.dicom.query_identifier import response_identifier
from dicomflow.dicom.response_encoder import ResponsePlan
from dicomflow.engine.query_retrieve import ArchiveQueryRetrieve
from dicomflow.net.acceptor import LeanStoreSCP
from dicomflow.net.qr_scp import answer_bytes, encoded_match
from dicomflow.net.query_retrieve import (
    FindAnswer,
    InformationModel,
    QueryRequest,
    RetrievedInstance,
)

RETURN_KEYS = [
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "StudyDescription", "ReferringPhysicianName", "PatientName", "PatientID",
    "PatientBirthDate", "PatientSex", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
]  # fmt: skip


def identifier() -> Dataset:
    """A Study Root, STUDY level identifier with the return keys, all empty."""
    dataset = Dataset()
    dataset.QueryRetrieveLevel = "STUDY"
    for keyword in RETURN_KEYS:
        setattr(dataset, keyword, "")
    return dataset


def synthetic(index: int) -> dict[str, Any]:
    """One study as the catalog answers it (DICOM JSON)."""
    name = "Müller^Jürgen" if index % 10 == 0 else f"Smith^John{index}"
    return {
        "0020000D": {"vr": "UI", "Value": [f"1.2.826.0.1.3680043.8.498.{index}"]},
        "00080020": {"vr": "DA", "Value": ["20230415"]},
        "00080030": {"vr": "TM", "Value": ["154400.123"]},
        "00080050": {"vr": "SH", "Value": [f"A{index:09d}"]},
        "00200010": {"vr": "SH", "Value": [str(index % 997)]},
        "00081030": {"vr": "LO", "Value": ["MR HEART"]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00100020": {"vr": "LO", "Value": [f"P{index:07d}"]},
        "00100030": {"vr": "DA", "Value": ["19750919"]},
        "00100040": {"vr": "CS", "Value": ["F"]},
        "00080061": {"vr": "CS", "Value": ["MR", "SR"]},
        "00201206": {"vr": "IS", "Value": [3]},
        "00201208": {"vr": "IS", "Value": [120]},
    }


def per_answer(encode: Callable[[Any], bytes], matches: Iterable[Any]) -> tuple[float, int]:
    """Microseconds per answer of ``encode`` over ``matches``, and how many there were."""
    start = time.perf_counter()
    count = sum(1 for match in matches if encode(match))
    return (time.perf_counter() - start) / max(count, 1) * 1e6, count


def synthetic_figures(count: int) -> None:
    request = identifier()
    plan = ResponsePlan(request, "STUDY", "DICOMFLOW")
    results = [synthetic(index) for index in range(count)]
    for implicit in (True, False):
        syntax = "implicit" if implicit else "explicit"
        ours, _ = per_answer(partial(encoder_bytes, plan, implicit), results)
        theirs, _ = per_answer(partial(pydicom_bytes, request, implicit), results)
        print(f"{syntax:9} encoder {ours:7.1f} µs/answer   pydicom {theirs:7.1f} µs/answer")


def encoder_bytes(plan: ResponsePlan, implicit: bool, result: dict[str, Any]) -> bytes:
    return plan.answer(result).encoded(implicit) or b""


def pydicom_bytes(request: Dataset, implicit: bool, result: dict[str, Any]) -> bytes:
    """The answer as pydicom made it: from_json, trimmed, encoded."""
    answer = response_identifier(request, "STUDY", result, "DICOMFLOW")
    return encoded_match(answer, request, implicit)


def catalog_figures(location: str) -> None:
    """Every study of the catalog through the engine's provider, end to end but the wire."""
    catalog = open_catalog(location)
    provider = ArchiveQueryRetrieve(catalog, "/nonexistent", [], ae_title="DICOMFLOW")
    request = QueryRequest(InformationModel.STUDY_ROOT, identifier(), "BENCH", "127.0.0.1")
    ours, count = per_answer(
        lambda answer: answer_bytes(answer, request.identifier, True), provider.find(request)
    )
    theirs, _ = per_answer(
        lambda answer: encoded_match(answer.dataset(), request.identifier, True),
        provider.find(request),
    )
    print(f"catalog   {count} studies: encoder {ours:7.1f} µs/answer   pydicom {theirs:7.1f}")
    catalog.close()


class Served:
    """The provider, counting its answers; ``as_datasets``: each answer's dataset, which
    the acceptor trims and pydicom encodes (what the acceptor did before)."""

    def __init__(self, provider: ArchiveQueryRetrieve, as_datasets: bool) -> None:
        self.provider = provider
        self.as_datasets = as_datasets
        self.count = 0

    def find(self, request: QueryRequest) -> Iterator[FindAnswer | Dataset]:
        for answer in self.provider.find(request):
            self.count += 1
            yield answer.dataset() if self.as_datasets else answer

    def retrieve(self, request: QueryRequest) -> list[RetrievedInstance]:
        return []

    def destination(self, ae_title: str) -> None:
        return None


def findscu_figures(location: str) -> None:
    """Every study of the catalog asked for by findscu, from the lean acceptor."""
    catalog = open_catalog(location)
    provider = ArchiveQueryRetrieve(catalog, "/nonexistent", [], ae_title="DICOMFLOW")
    for label, as_datasets in (("encoder", False), ("pydicom", True)):
        served = Served(provider, as_datasets)
        scp = LeanStoreSCP(
            ae_title="DICOMFLOW", ip="127.0.0.1", port=0, on_store=lambda _: 0,
            query_retrieve=served,
        )  # fmt: skip
        try:
            seconds = timed_findscu(scp.port)
        finally:
            scp.close()
        count = max(served.count, 1)
        print(f"findscu   {count} studies: {label} {seconds / count * 1e6:7.1f} µs/answer")
    catalog.close()


def timed_findscu(port: int) -> float:
    """Seconds one findscu run takes (one association, one C-FIND, answers not printed)."""
    command = ["findscu", "-S", "-aec", "DICOMFLOW", "-k", "QueryRetrieveLevel=STUDY"]
    for keyword in RETURN_KEYS:
        command += ["-k", keyword]
    command += ["127.0.0.1", str(port)]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--matches", type=int, default=5000)
    parser.add_argument("--catalog", help="a catalog (SQLite file) to answer every study of")
    parser.add_argument("--findscu", action="store_true", help="and ask it with findscu")
    arguments = parser.parse_args()
    synthetic_figures(arguments.matches)
    if arguments.catalog:
        catalog_figures(arguments.catalog)
        if arguments.findscu:
            findscu_figures(arguments.catalog)


if __name__ == "__main__":
    main()
