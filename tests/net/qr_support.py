"""A Query/Retrieve provider over a folder of Part-10 files, for the lean acceptor's tests:
matching by :class:`dicomflow.dicom.matching.Query` over each file's DICOM JSON."""

import contextlib
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from pydicom import Dataset, dcmread

from dicomflow.address import Address
from dicomflow.dicom.matching import Key, Query
from dicomflow.net import pdu
from dicomflow.net.query_retrieve import QueryRequest, RetrievedInstance
from support import association_request

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
ABORTED = -1
"""What :func:`raw_find` reports for an A-ABORT instead of a response."""

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


def raw_find(port: int, identifier: bytes, syntax: str = "1.2.840.10008.1.2") -> list[int]:
    """Send a C-FIND-RQ with ``identifier`` as raw bytes (malformed if need be) over a
    study root context; the statuses of its responses (the final one last), ending with
    ``ABORTED`` if the SCP aborts the association."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(association_request(contexts=((STUDY_ROOT_FIND, syntax),)))
        pdu_type, _ = pdu.read_pdu(connection, maximum_data=1 << 20, maximum_other=1 << 20)
        assert pdu_type == pdu.ASSOCIATE_AC
        command = pdu.command_set(
            (pdu.AFFECTED_SOP_CLASS_UID, pdu.pad_uid(STUDY_ROOT_FIND)),
            (pdu.COMMAND_FIELD, (0x0020).to_bytes(2, "little")),
            (pdu.MESSAGE_ID, (7).to_bytes(2, "little")),
            (pdu.PRIORITY, b"\x00\x00"),
            (pdu.COMMAND_DATA_SET_TYPE, b"\x00\x00"),
        )
        with contextlib.suppress(ConnectionError):  # an SCP aborting may close it meanwhile
            for buffers in pdu.message_pdus(1, command, [identifier], len(identifier), 16000):
                connection.sendall(b"".join(bytes(b) for b in buffers))
        statuses: list[int] = []
        while not statuses or statuses[-1] in (0xFF00, 0xFF01):
            kind, body = pdu.read_pdu(connection, maximum_data=1 << 20, maximum_other=1 << 20)
            if kind == pdu.ABORT:
                return [*statuses, ABORTED]
            for _, control, fragment in pdu.pdv_items(body):
                if control & pdu.COMMAND:
                    statuses.append(pdu.us(pdu.parse_command(bytes(fragment)), pdu.STATUS))
        connection.sendall(pdu.pdu(pdu.RELEASE_RQ, pdu.RELEASE_BODY))
        return statuses
