"""C-MOVE from pipeline code: ``send_move(ae_title, address, identifier)``, and the
identifiers of C-FIND, C-MOVE and C-GET requests: their query levels, the keys each
level needs, the return keys asked for by default, and identifiers built from
``Keyword=value`` keys as people type them (``query_identifier``)."""

import logging
import threading
from enum import Enum
from typing import Any

from pydicom import DataElement, Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import UID

from dicomflow.address import Address
from dicomflow.dicom.keys import shorten
from dicomflow.dicom.matching import attribute_tag
from dicomflow.errors import (
    CouldNotCompleteDIMSEMessage,
    InvalidQueryDataset,
    PeerUnreachableError,
    QueryKeyError,
)
from dicomflow.net.requestor import SUCCESS_STATUSES, move

logger = logging.getLogger(__name__)

PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
PATIENT_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.1.2")


class QueryLevels(Enum):
    """The query/retrieve levels of the patient root model."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"

    def find_sop_class(self) -> UID:
        return PATIENT_ROOT_FIND

    def move_sop_class(self) -> UID:
        return PATIENT_ROOT_MOVE


class DIMSE_StatusCodes(Enum):
    """Common DIMSE status codes (failures span 0xC000-0xCFFF)."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    PENDING_MISSING_KEYS = 0xFF01
    CANCELLED = 0xFE00
    SOP_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    FAILED = 0xC000


LEVEL_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID"}
RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "StudyDate",
    "StudyDescription",
    "StudyID",
    "SeriesDescription",
    "SeriesNumber",
)


def validate_query_dataset(dataset: Dataset) -> bool:
    """Tell whether ``dataset`` has a known QueryRetrieveLevel and that level's unique key;
    log why not."""
    if "QueryRetrieveLevel" not in dataset:
        return False
    level = dataset.QueryRetrieveLevel
    key = LEVEL_KEYS.get(level)
    if key is None:
        logger.error('QueryRetrieveLevel "%s" is not PATIENT, STUDY or SERIES.', level)
        return False
    if key not in dataset:
        logger.error("A query at %s level has no %s.", level, key)
        return False
    return True


def create_query_dataset(query_level: QueryLevels = QueryLevels.STUDY, **kwargs: Any) -> Dataset:
    """An identifier at ``query_level`` asking for the usual return keys, with ``kwargs``
    (DICOM keywords) as matching keys: ``create_query_dataset(PatientID="123")``.

    Raises:
        ValueError: if a keyword is not a DICOM keyword.
        InvalidQueryDataset: if the identifier lacks its level's unique key.
    """
    dataset = Dataset()
    dataset.QueryRetrieveLevel = query_level.value
    for keyword in RETURN_KEYS:
        setattr(dataset, keyword, None)
    for keyword, value in kwargs.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f'"{keyword}" is not a DICOM keyword.')
        dataset[tag] = DataElement(tag, dictionary_VR(tag), value)
    if not validate_query_dataset(dataset):
        raise InvalidQueryDataset(
            f"The query at {dataset.QueryRetrieveLevel} level is not valid: it needs a known"
            " QueryRetrieveLevel and that level's unique key."
        )
    return dataset


def send_move(
    SCU_AE: str,
    address: Address,
    dataset: Dataset,
    query_level: QueryLevels = QueryLevels.PATIENT,
) -> None:
    """Ask the peer at ``address`` to C-MOVE what ``dataset`` matches to ``SCU_AE`` (the
    peer must know where that AE title listens). ``dataset`` gets ``query_level`` if it
    has no QueryRetrieveLevel.

    Raises:
        InvalidQueryDataset: if ``dataset`` lacks its level's unique key.
        CouldNotCompleteDIMSEMessage: if the peer cannot be reached or the move failed.
    """
    if "QueryRetrieveLevel" not in dataset:
        dataset.QueryRetrieveLevel = query_level.value
    if not validate_query_dataset(dataset):
        raise InvalidQueryDataset(f"The C-MOVE identifier for {address} is not valid.")
    try:
        statuses = move(address, dataset, SCU_AE, PATIENT_ROOT_MOVE, calling_ae_title=SCU_AE)
    except PeerUnreachableError as exc:
        logger.error("C-MOVE as %s to %s: %s", SCU_AE, address, exc)
        raise CouldNotCompleteDIMSEMessage(str(exc)) from exc
    logger.debug("C-MOVE to %s: statuses %s", address, [f"0x{s:04X}" for s in statuses])
    if statuses[-1] not in SUCCESS_STATUSES:
        logger.error("C-MOVE to %s ended with status 0x%04X", address, statuses[-1])
        raise CouldNotCompleteDIMSEMessage(
            f"The C-MOVE to {address} ended with status 0x{statuses[-1]:04X}."
        )


def send_move_thread(
    SCU_AE: str,
    address: Address,
    dataset: Dataset,
    query_level: QueryLevels = QueryLevels.PATIENT,
    daemon: bool = True,
) -> threading.Thread:
    """Run :func:`send_move` in a thread of its own, started; return the thread."""
    thread = threading.Thread(
        target=send_move,
        args=(SCU_AE, address, dataset),
        kwargs={"query_level": query_level},
        daemon=daemon,
        name=f"dicomflow-move {address}",
    )
    thread.start()
    return thread


QUERY_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
DEFAULT_RETURN_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "STUDY": (
        "PatientName",
        "PatientID",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "StudyInstanceUID",
    ),
    "SERIES": (
        "StudyInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesInstanceUID",
    ),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "InstanceNumber", "SOPInstanceUID"),
}
"""What a query at each level asks the peer to return unless told otherwise."""
MAX_KEY_VALUE = 1024
"""A matching value longer than this is refused (no DICOM VR a key uses needs more)."""


def query_identifier(level: str, keys: list[str], *, return_keys: bool = True) -> Dataset:
    """An identifier at ``level`` (PATIENT, STUDY, SERIES or IMAGE) with ``keys`` of the
    form ``Keyword=value`` (or a tag ``00100020=value``; an empty value or no ``=`` asks
    for the attribute back) and, with ``return_keys``, the level's default return keys.

    Raises:
        QueryKeyError: naming the level or the key that is not valid (an unknown keyword,
            a sequence, a value over ``MAX_KEY_VALUE`` characters or with control
            characters).
    """
    if level not in QUERY_LEVELS:
        raise QueryKeyError(
            f'Query level "{shorten(level)}" is not one of {", ".join(QUERY_LEVELS)}.'
        )
    dataset = Dataset()
    dataset.QueryRetrieveLevel = level
    for keyword in DEFAULT_RETURN_KEYS[level] if return_keys else ():
        setattr(dataset, keyword, None)
    for key in keys:
        element = key_element(key)
        dataset[element.tag] = element
    return dataset


def key_element(key: str) -> DataElement:
    """The element ``Keyword=value`` asks to match (see :func:`query_identifier`)."""
    name, _, value = key.partition("=")
    tag = int(attribute_tag(name.strip()), 16)
    vr = dictionary_vr_of(tag, name)
    if len(value) > MAX_KEY_VALUE:
        raise QueryKeyError(
            f'Query key "{shorten(name)}": its value is {len(value)} characters long;'
            f" at most {MAX_KEY_VALUE} are allowed."
        )
    if any(ord(character) < 0x20 for character in value):
        raise QueryKeyError(f'Query key "{shorten(name)}": its value has control characters.')
    return DataElement(tag, vr, value or None)


def dictionary_vr_of(tag: int, name: str) -> str:
    """The VR of ``tag``; raise :class:`QueryKeyError` for a sequence or unknown tag."""
    try:
        vr = dictionary_VR(tag)
    except KeyError as exc:
        raise QueryKeyError(f'Query key "{shorten(name)}" is not in the DICOM dictionary.') from exc
    if vr == "SQ":
        raise QueryKeyError(
            f'Query key "{shorten(name)}" is a sequence; sequences are not supported.'
        )
    return vr
