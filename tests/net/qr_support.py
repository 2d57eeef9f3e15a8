"""A Query/Retrieve provider over a folder of Part-10 files, for the lean acceptor's tests:
matching by :class:`dicomflow.dicom.matching.Query` over each file's DICOM JSON."""

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from pydicom import Dataset, dcmread

from dicomflow.address import Address
from dicomflow.dicom.matching import Key, Query
from dicomflow.net.query_retrieve import QueryRequest, RetrievedInstance

UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
SKIPPED = {"QueryRetrieveLevel", "SpecificCharacterSet"}


class FolderProvider:
    """Matches every file of ``folder`` (read one at a time); ``destinations`` by AE title.
    ``finds`` counts the matches handed out, so a test can see a cancel stop them."""

    def __init__(self, folder: Path, destinations: dict[str, Address] | None = None) -> None:
        self.folder = folder
        self.destinations = destinations or {}
        self.finds = 0

    def find(self, request: QueryRequest) -> Iterator[Dataset]:
        level = request.identifier.QueryRetrieveLevel
        seen: set[str] = set()
        for _, dataset in self._matches(request.identifier):
            unique = str(dataset.get(UNIQUE_KEYS[level], ""))
            if unique not in seen:
                seen.add(unique)
                self.finds += 1
                yield dataset  # whole: the SCP trims it to the keys asked for

    def retrieve(self, request: QueryRequest) -> list[RetrievedInstance]:
        return [
            RetrievedInstance(
                str(dataset.SOPClassUID),
                str(dataset.SOPInstanceUID),
                str(dataset.file_meta.TransferSyntaxUID),
                partial(path.read_bytes),
            )
            for path, dataset in self._matches(request.identifier)
        ]

    def destination(self, ae_title: str) -> Address | None:
        return self.destinations.get(ae_title)

    def _matches(self, identifier: Dataset) -> Iterator[tuple[Path, Dataset]]:
        query = _query(identifier)
        for path in sorted(self.folder.iterdir()):
            dataset = dcmread(path, stop_before_pixels=True)
            if query.matches(dataset.to_json_dict()):
                yield path, dataset


def _query(identifier: Dataset) -> Query:
    keys = []
    for element in identifier:
        if element.keyword in SKIPPED or element.VR == "SQ":
            continue
        value = element.value
        text = "\\".join(str(v) for v in value) if element.VM > 1 else str(value or "")
        keys.append(Key(f"{element.tag:08X}", element.VR, text))
    return Query(keys)
