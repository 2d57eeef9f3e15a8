"""The storage service both receivers share: what a received instance is, who may
associate, the guarded store call, and the one table from errors to C-STORE statuses.

Both receivers (:mod:`dicomflow.net.acceptor`, the default, and
:mod:`dicomflow.net.pynetdicom_acceptor`) hand each C-STORE to
:func:`store_guarded` as a :class:`ReceivedInstance`, which checks it
(:mod:`dicomflow.net.agreement`) and calls the node's ``on_store``. The engine
raises typed errors (:mod:`dicomflow.errors`); only this module turns them into
a DICOM status (PS3.4 B.2.3, PS3.7 C), with a log line and a refusal counted:

================================  ======  ==========================================
error                             status  meaning (PS3.4 B.2.3 / PS3.7 C)
================================  ======  ==========================================
SOPClassNotSupportedError         0x0122  Refused: SOP Class not supported (on the
                                          presentation context, e.g. Verification)
DatasetMismatchError              0xA900  Error: Data Set does not match SOP Class
                                          (UIDs differ from the command's, Pixel Data
                                          length contradicts Rows x Columns x ...)
NotArchivableError                0xA900  the same, counted as not_archivable: an
                                          archiving node cannot file the instance
                                          (no valid Study/Series Instance UID)
UnreadableInstanceError,          0xC210  Error: Cannot understand (undecodable
TruncatedDatasetError                     dataset, a command UID not ASCII)
InvalidKeyError                   0xC210  a value unusable as a key (PatientID)
SpoolError, MemoryError,          0xA700  Refused: Out of resources (counted as
InstanceTooLargeError                     too_large or memory by the limit passed)
anything else                     0xC001  Error: Cannot understand (unexpected)
================================  ======  ==========================================
"""

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

from pydicom import Dataset
from pydicom.uid import UID

from dicomflow import metrics
from dicomflow.address import valid_ae_title
from dicomflow.dicom.filemeta import encode_file_meta
from dicomflow.dicom.inflate import Reserve, unlimited
from dicomflow.dicom.integrity import DEFAULT_MAXIMUM_BYTES, decode_complete
from dicomflow.errors import (
    DatasetMismatchError,
    InstanceTooLargeError,
    InvalidKeyError,
    NotArchivableError,
    SOPClassNotSupportedError,
    SpoolError,
    TruncatedDatasetError,
    UnreadableInstanceError,
)
from dicomflow.logs import escaped
from dicomflow.net.agreement import check_agreement

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
ELEMENTS_DISCARDED = 0xB006  # Warning: a pipeline's filter() did not admit the instance
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
FAILED = 0xC001


@dataclass(frozen=True)
class Refusal:
    """How one kind of error is answered: a status, and the reason it is counted under."""

    status: int
    reason: str


TABLE: dict[type[BaseException], Refusal] = {
    NotArchivableError: Refusal(DATASET_MISMATCH, metrics.REASON_NOT_ARCHIVABLE),
    SOPClassNotSupportedError: Refusal(SOP_CLASS_NOT_SUPPORTED, metrics.REASON_SOP_CLASS),
    DatasetMismatchError: Refusal(DATASET_MISMATCH, metrics.REASON_MISMATCH),
    UnreadableInstanceError: Refusal(CANNOT_UNDERSTAND, metrics.REASON_MALFORMED),
    TruncatedDatasetError: Refusal(CANNOT_UNDERSTAND, metrics.REASON_MALFORMED),
    InvalidKeyError: Refusal(CANNOT_UNDERSTAND, metrics.REASON_INVALID_VALUE),
    SpoolError: Refusal(OUT_OF_RESOURCES, metrics.REASON_STORAGE_ERROR),
    MemoryError: Refusal(OUT_OF_RESOURCES, metrics.REASON_STORAGE_ERROR),
}
UNEXPECTED = Refusal(FAILED, metrics.REASON_HANDLER_ERROR)


def refusal_for(error: BaseException) -> Refusal | None:
    """The table's entry for ``error`` (the first of its classes listed), if any."""
    if isinstance(error, InstanceTooLargeError):  # the setting it passed names the reason
        large = error.setting == "maximum_instance_bytes"
        return Refusal(
            OUT_OF_RESOURCES, metrics.REASON_TOO_LARGE if large else metrics.REASON_MEMORY
        )
    for kind in type(error).__mro__:
        if kind in TABLE:
            return TABLE[kind]
    return None


def refused(origin: object, error: BaseException) -> int:
    """The status for an instance from ``origin`` (an association id, an upload) that
    failed with ``error``; logged once and counted."""
    refusal = refusal_for(error)
    if refusal is None:
        logger.error("%s: storing an instance failed", origin, exc_info=error)
        refusal = UNEXPECTED
    else:
        logger.warning(
            "%s: instance refused with status 0x%04X: %s", origin, refusal.status, escaped(error)
        )
    metrics.rejected(refusal.reason)
    return refusal.status


@dataclass
class ReceivedInstance:
    """One C-STORE request as the node sees it."""

    association_id: int
    calling_ae_title: str
    peer_ip: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: UID
    raw: bytes | bytearray = field(repr=False)  # the dataset bytes exactly as the peer sent them
    maximum_bytes: int = DEFAULT_MAXIMUM_BYTES  # what a deflated dataset may inflate to
    reserve: Reserve = field(default=unlimited, repr=False)  # the receiver's memory budget
    abstract_syntax: str = ""  # of the presentation context it came on, when known

    @cached_property
    def dataset(self) -> Dataset:
        """The dataset, decoded in one pass (a truncated encoding raises here; so does a
        deflated one that inflates past ``maximum_bytes`` or ``reserve``)."""
        return decode_complete(
            self.raw, self.transfer_syntax, maximum_bytes=self.maximum_bytes, reserve=self.reserve
        )

    def encoded(self) -> bytes:
        """The instance as Part-10 bytes: file meta, then the dataset as received."""
        return b"".join(self.encoded_parts())

    def encoded_parts(self) -> tuple[bytes, bytes | bytearray]:
        """:meth:`encoded` in two parts (file meta, dataset), so the dataset is not copied."""
        meta = encode_file_meta(self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax)
        return meta, self.raw


StoreCallback = Callable[[ReceivedInstance], int]
ReleaseCallback = Callable[[int], None]
RefusedCallback = Callable[[str, str], None]
"""Told what was refused: ``("ip" | "ae_title" | "called_ae_title" | "instance", value)``."""


@dataclass
class AccessPolicy:
    """Which calling AE titles and peer IP networks may associate (empty = all)."""

    ae_titles: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def build(cls, ae_titles: Iterable[str], ips: Iterable[str]) -> "AccessPolicy":
        titles = frozenset(title.strip() for title in ae_titles)
        bad = [title for title in titles if not valid_ae_title(title)]
        if bad:
            raise ValueError(f'allowed_ae_titles: "{bad[0]}" is not a valid AE title.')
        try:
            networks = tuple(ipaddress.ip_network(ip, strict=False) for ip in ips)
        except ValueError as exc:
            raise ValueError(f"allowed_ips: {exc}.") from exc
        return cls(titles, networks)

    def allows_ip(self, ip: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def allows_ae_title(self, title: str) -> bool:
        return not self.ae_titles or title.strip() in self.ae_titles


def admit_ip(policy: AccessPolicy, ip: str, on_refused: RefusedCallback | None) -> bool:
    """Whether a connection from ``ip`` may go on; a refusal is logged and counted."""
    if policy.allows_ip(ip):
        return True
    logger.warning("refused connection from %s: IP address not in allowed_ips", ip)
    metrics.rejected(metrics.REASON_IP)
    if on_refused is not None:
        on_refused("ip", ip)
    return False


def store_guarded(
    on_store: StoreCallback,
    instance: ReceivedInstance,
    on_refused: RefusedCallback | None = None,
) -> int:
    """``on_store(instance)`` once the C-STORE's command and dataset agree; a refusal or
    any exception becomes a failure status and a log line (:func:`refused`), and is
    reported to ``on_refused``."""
    try:
        metrics.BYTES_RECEIVED.inc(len(instance.raw))
        check_agreement(instance)
        return on_store(instance)
    except (Exception, MemoryError) as exc:
        if on_refused is not None:
            on_refused("instance", instance.sop_instance_uid)
        return refused(f"association {instance.association_id}", exc)
