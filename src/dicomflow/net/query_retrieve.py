"""Query/Retrieve service types (PS3.4 Annex C): what the acceptors answer C-FIND,
C-MOVE and C-GET with, and what they ask of the archive behind them.

The acceptors speak the protocol: they negotiate the information models' SOP
classes, decode identifiers, send pending responses, C-STORE sub-operations (on
the same association for C-GET, on a new one to the destination for C-MOVE) and
the final counts. What matches and where instances are read from is a
:class:`QueryRetrieveProvider`'s business (the engine's, over the catalog); it
never sees a status code. Errors it raises map to statuses here:

- :class:`~dicomflow.errors.QueryKeyError` or
  :class:`~dicomflow.errors.InvalidQueryDataset` -> 0xA900 (identifier does not
  match SOP class) or 0xC000 for an unknown level;
- :class:`~dicomflow.errors.UnknownMoveDestinationError` -> 0xA801;
- anything else -> 0xC000 (unable to process), with a log line naming the peer.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from pydicom import Dataset

from dicomflow.address import Address


class InformationModel(StrEnum):
    """The query/retrieve information models served (PS3.4 C.6)."""

    PATIENT_ROOT = "PATIENT_ROOT"
    STUDY_ROOT = "STUDY_ROOT"


class Operation(StrEnum):
    FIND = "FIND"
    MOVE = "MOVE"
    GET = "GET"


SOP_CLASSES: dict[str, tuple[InformationModel, Operation]] = {
    "1.2.840.10008.5.1.4.1.2.1.1": (InformationModel.PATIENT_ROOT, Operation.FIND),
    "1.2.840.10008.5.1.4.1.2.1.2": (InformationModel.PATIENT_ROOT, Operation.MOVE),
    "1.2.840.10008.5.1.4.1.2.1.3": (InformationModel.PATIENT_ROOT, Operation.GET),
    "1.2.840.10008.5.1.4.1.2.2.1": (InformationModel.STUDY_ROOT, Operation.FIND),
    "1.2.840.10008.5.1.4.1.2.2.2": (InformationModel.STUDY_ROOT, Operation.MOVE),
    "1.2.840.10008.5.1.4.1.2.2.3": (InformationModel.STUDY_ROOT, Operation.GET),
}
"""The Q/R SOP classes an acceptor with a provider accepts, and what each is."""


@dataclass(frozen=True)
class QueryRequest:
    """One C-FIND, C-MOVE or C-GET request, its identifier decoded."""

    model: InformationModel
    identifier: Dataset
    calling_ae_title: str
    peer_ip: str


@dataclass(frozen=True)
class RetrievedInstance:
    """An instance a C-MOVE or C-GET sends: ``read()`` returns its Part-10 bytes (read
    only when it is sent, so a retrieval holds one instance at a time)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    read: Callable[[], bytes]


class FindAnswer(Protocol):
    """A C-FIND match a provider has not made a dataset of (building one per match is
    most of the cost of a large answer): the acceptor asks for its bytes first."""

    def encoded(self, implicit: bool) -> bytes | None:
        """The response identifier in implicit or explicit VR little endian, holding the
        request identifier's elements only; None if :meth:`dataset` must be encoded."""

    def dataset(self) -> Dataset:
        """The response identifier as a dataset (the acceptor trims it to the keys)."""


class QueryRetrieveProvider(Protocol):
    """What matches a query and where matched instances come from."""

    def find(self, request: QueryRequest) -> Iterator[Dataset | FindAnswer]:
        """The C-FIND responses' identifiers, one per match, produced lazily (a peer may
        cancel, and a query may match millions): datasets, or answers that encode
        themselves."""

    def retrieve(self, request: QueryRequest) -> list[RetrievedInstance]:
        """The instances a C-MOVE or C-GET of ``request`` sends."""

    def destination(self, ae_title: str) -> Address | None:
        """Where a C-MOVE destination AE title listens, or None if it is not known."""
