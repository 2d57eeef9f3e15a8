"""The archive's answers to C-FIND, C-MOVE and C-GET: a
:class:`~dicomflow.net.query_retrieve.QueryRetrieveProvider` over the catalog.

Matches come from the catalog a page at a time (a query matching millions streams,
and a peer's C-CANCEL stops the paging), each answered from its DICOM JSON by a
:class:`~dicomflow.dicom.response_encoder.ResponsePlan` made once per query; instances
are read from the datastore's series tars only when sent, through one
:class:`~dicomflow.cod.query.ArchiveReader`. C-MOVE destinations are the
``move_destinations`` and the export ``endpoints``, known by AE title: a peer
never makes the node connect anywhere it was not told to.
"""

import logging
from collections.abc import Iterable, Iterator
from functools import partial

from pydicom import Dataset

from dicomflow.address import Address
from dicomflow.cod.catalog import Catalog, Level, LocatedInstance
from dicomflow.cod.query import ArchiveReader, SeriesDocument
from dicomflow.dicom.matching import Query
from dicomflow.dicom.query_identifier import (
    QueryIdentifier,
    check_retrieval,
    parse_identifier,
)
from dicomflow.dicom.response_encoder import FindAnswer, ResponsePlan
from dicomflow.errors import CODNotFoundError
from dicomflow.net.query_retrieve import QueryRequest, RetrievedInstance

logger = logging.getLogger(__name__)

PAGE_SIZE = 500


class ArchiveQueryRetrieve:
    """Query/Retrieve over ``catalog`` (the index of ``datastore``), answering as
    ``ae_title``; C-MOVE sends to ``destinations`` only."""

    def __init__(
        self,
        catalog: Catalog,
        datastore: str,
        destinations: Iterable[Address],
        *,
        ae_title: str,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.catalog = catalog
        self.reader = ArchiveReader(datastore)
        self.ae_title = ae_title
        self.page_size = page_size
        self._destinations: dict[str, Address] = {}
        for address in destinations:  # the first one given for an AE title wins
            self._destinations.setdefault(address.ae_title.strip(), address)

    def find(self, request: QueryRequest) -> Iterator[FindAnswer]:
        """The matches' response identifiers, lazily (the identifier is checked now:
        :class:`InvalidQueryDataset` or :class:`QueryKeyError` before any answer)."""
        parsed = parse_identifier(request.identifier, request.model)
        logger.info(
            "C-FIND from %s (%s): %s level, %d keys",
            request.calling_ae_title,
            request.peer_ip,
            parsed.level,
            len(parsed.query.keys),
        )
        return self._answers(request.identifier, parsed)

    def _answers(self, identifier: Dataset, parsed: QueryIdentifier) -> Iterator[FindAnswer]:
        """Each match as it comes, encoded when sent (the per-query work done once)."""
        plan = ResponsePlan(identifier, parsed.level, self.ae_title)
        for result in self._matches(Level(parsed.level), parsed.query):
            yield plan.answer(result)

    def _matches(self, level: Level, query: Query) -> Iterator[dict[str, object]]:
        """Every match, read from the catalog ``page_size`` at a time."""
        offset = 0
        while True:
            page = Query(query.keys, query.include, query.include_all, self.page_size, offset)
            results = self.catalog.search(level, page)
            yield from results
            if len(results) < self.page_size:
                return
            offset += len(results)

    def retrieve(self, request: QueryRequest) -> list[RetrievedInstance]:
        """The instances under the entities the identifier names (by their unique keys).

        Raises:
            InvalidQueryDataset: the identifier's level or unique key is missing or bad.
        """
        parsed = parse_identifier(request.identifier, request.model)
        check_retrieval(parsed)
        located = self.catalog.locate(Level(parsed.level), parsed.query)
        logger.info(
            "retrieval by %s (%s): %s level, %d instances",
            request.calling_ae_title,
            request.peer_ip,
            parsed.level,
            len(located),
        )
        documents = _Documents(self.reader)
        return [_retrieved(instance, documents) for instance in located]

    def destination(self, ae_title: str) -> Address | None:
        return self._destinations.get(ae_title.strip())


def _retrieved(instance: LocatedInstance, documents: "_Documents") -> RetrievedInstance:
    return RetrievedInstance(
        sop_class_uid=instance.sop_class_uid,
        sop_instance_uid=instance.sop_instance_uid,
        transfer_syntax=instance.transfer_syntax,
        read=partial(documents.instance_bytes, instance),
    )


class _Documents:
    """The series metadata one retrieval reads instances through: looked up once per
    series (instances come ordered by series), not once per instance."""

    def __init__(self, reader: ArchiveReader) -> None:
        self._reader = reader
        self._current: SeriesDocument | None = None

    def instance_bytes(self, instance: LocatedInstance) -> bytes:
        """The instance's Part-10 bytes, checked (:class:`CODNotFoundError` if its series
        is gone, :class:`CODIntegrityError` if its bytes do not match their record)."""
        return self._reader.instance_bytes(self._document(instance), instance.sop_instance_uid)

    def _document(self, instance: LocatedInstance) -> SeriesDocument:
        current = self._current
        if current is not None and (current.study_uid, current.series_uid) == (
            instance.study_uid,
            instance.series_uid,
        ):
            return current
        document = self._reader.document(instance.study_uid, instance.series_uid)
        if document is None:
            raise CODNotFoundError(
                f'Series "{instance.series_uid}" of study "{instance.study_uid}" is no longer'
                " in the archive."
            )
        self._current = document
        return document
