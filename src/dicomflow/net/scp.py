"""The node's SCP: a pynetdicom server answering C-ECHO and C-STORE.

The server only moves bytes and statuses. What happens to an instance is the
business of the ``on_store`` callback, which returns a DICOM status; any
exception it raises becomes a failure status and a log line, never a crash.
"""

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from dicomflow import metrics
from dicomflow.dicom.filemeta import encode_file_meta
from dicomflow.dicom.inflate import Reserve, unlimited
from dicomflow.dicom.integrity import DEFAULT_MAXIMUM_BYTES, decode_complete
from dicomflow.errors import PortInUseError
from dicomflow.logs import escaped
from dicomflow.net import reactor, status
from dicomflow.net.address import valid_ae_title
from dicomflow.net.agreement import check_agreement
from dicomflow.net.contexts import storage_contexts
from dicomflow.net.socket import tune_accepted_socket

logger = logging.getLogger(__name__)

STATUS_SUCCESS = status.SUCCESS
STATUS_OUT_OF_RESOURCES = status.OUT_OF_RESOURCES
STATUS_CANNOT_UNDERSTAND = status.CANNOT_UNDERSTAND
STATUS_PROCESSING_FAILURE = 0x0110
STATUS_FAILED = status.FAILED
STATUS_DATASET_MISMATCH = 0xA900
"""The dataset does not match the SOP class (a Type 1 attribute is missing or invalid)."""


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


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server with socket tuning and an IP allow-list."""

    policy: AccessPolicy = AccessPolicy()
    on_refused: Callable[[str, str], None] | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        tune_accepted_socket(connection)
        return connection, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return admit_ip(self.policy, str(client_address[0]), self.on_refused)


def admit_ip(policy: AccessPolicy, ip: str, on_refused: Callable[[str, str], None] | None) -> bool:
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
    on_refused: Callable[[str, str], None] | None = None,
) -> int:
    """``on_store(instance)`` once the C-STORE's command and dataset agree; a refusal or
    any exception becomes a failure status and a log line (:mod:`dicomflow.net.status`),
    and is reported to ``on_refused``."""
    try:
        metrics.BYTES_RECEIVED.inc(len(instance.raw))
        check_agreement(instance)
        return on_store(instance)
    except (Exception, MemoryError) as exc:
        if on_refused is not None:
            on_refused("instance", instance.sop_instance_uid)
        return status.refused(f"association {instance.association_id}", exc)


class StoreSCP:
    """A running C-STORE/C-ECHO server; stop it with :meth:`close`."""

    def __init__(
        self,
        *,
        ae_title: str,
        ip: str,
        port: int,
        on_store: StoreCallback,
        on_release: ReleaseCallback | None = None,
        policy: AccessPolicy | None = None,
        on_refused: Callable[[str, str], None] | None = None,
        maximum_pdu_size: int = 0,
        require_called_ae_title: bool = True,
        idle_timeout_s: float = 60.0,
        request_timeout_s: float = 10.0,
        maximum_associations: int = 64,
        maximum_instance_bytes: int = DEFAULT_MAXIMUM_BYTES,
    ) -> None:
        reactor.install()
        self._on_store = on_store
        self.maximum_instance_bytes = maximum_instance_bytes  # what a deflated one may inflate to
        self._on_release = on_release
        self._on_refused = on_refused
        self.policy = policy or AccessPolicy()
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = maximum_pdu_size
        self._ae.network_timeout = idle_timeout_s
        self._ae.dimse_timeout = idle_timeout_s
        self._ae.acse_timeout = request_timeout_s
        self._ae.maximum_associations = maximum_associations
        self._ae.require_called_aet = require_called_ae_title
        if self.policy.ae_titles:
            self._ae.require_calling_aet = sorted(self.policy.ae_titles)
        self._server = self._start(ip, port)

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop accepting associations and wait for the server thread to end."""
        self._server.shutdown()
        self._server.server_close()

    def _start(self, ip: str, port: int) -> _Server:
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, _handle_echo),
            (evt.EVT_RELEASED, self._handle_release),
            (evt.EVT_ABORTED, self._handle_release),
            (evt.EVT_REJECTED, self._handle_rejected),
            (evt.EVT_ACCEPTED, _handle_accepted),
        ]
        try:
            server = self._ae.make_server(
                (ip, port),
                contexts=storage_contexts(),
                evt_handlers=handlers,
                server_class=_Server,
            )
        except OSError as exc:
            raise PortInUseError(f"Cannot listen on {ip}:{port}: {exc.strerror}.") from exc
        if not isinstance(server, _Server):
            raise TypeError("pynetdicom did not build the requested server class.")
        server.policy = self.policy
        server.on_refused = self._on_refused
        thread = threading.Thread(target=server.serve_forever, name="dicomflow-scp", daemon=True)
        thread.start()
        self._ae._servers.append(server)
        return server

    def _handle_store(self, event: Any) -> int:
        assoc = event.assoc
        request = event.request
        instance = ReceivedInstance(
            association_id=id(assoc),
            calling_ae_title=str(assoc.requestor.ae_title).strip(),
            peer_ip=str(assoc.requestor.address),
            sop_class_uid=str(request.AffectedSOPClassUID),
            sop_instance_uid=str(request.AffectedSOPInstanceUID),
            transfer_syntax=UID(event.context.transfer_syntax),
            raw=bytes(request.DataSet.getvalue()),
            maximum_bytes=self.maximum_instance_bytes,
            abstract_syntax=str(event.context.abstract_syntax),
        )
        return store_guarded(self._on_store, instance, self._on_refused)

    def _handle_release(self, event: Any) -> None:
        if self._on_release is None:
            return
        try:
            self._on_release(id(event.assoc))
        except Exception:
            logger.exception("association %s: release handler failed", id(event.assoc))

    def _handle_rejected(self, event: Any) -> None:
        title = str(event.assoc.requestor.ae_title).strip()
        logger.warning("rejected association from AE title %s", escaped(repr(title)))
        metrics.rejected(metrics.REASON_AE_TITLE)
        if self._on_refused is not None:
            self._on_refused("ae_title", title)


def _handle_echo(event: Any) -> int:
    metrics.ECHOES.inc()
    return STATUS_SUCCESS


def _handle_accepted(event: Any) -> None:
    metrics.ASSOCIATIONS.inc()
