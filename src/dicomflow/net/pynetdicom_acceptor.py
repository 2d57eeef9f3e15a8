"""The optional receiver on pynetdicom's server (``receiver = "pynetdicom"``), answering
C-ECHO and C-STORE; the default is :mod:`dicomflow.net.acceptor`.

The server only moves bytes and statuses: each C-STORE becomes a
:class:`~dicomflow.net.storage.ReceivedInstance` handed to
:func:`~dicomflow.net.storage.store_guarded`, which checks it, calls the
``on_store`` callback and turns any exception into a failure status and a log
line, never a crash. pynetdicom runs stock.
"""

import logging
import socket
import threading
from typing import Any

from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from dicomflow import audit, metrics
from dicomflow.dicom.integrity import DEFAULT_MAXIMUM_BYTES
from dicomflow.errors import PortInUseError
from dicomflow.logs import escaped
from dicomflow.net.acceptor import study_uid
from dicomflow.net.contexts import storage_contexts
from dicomflow.net.socket import tune_accepted_socket
from dicomflow.net.storage import (
    SUCCESS,
    AccessPolicy,
    ReceivedInstance,
    RefusedCallback,
    ReleaseCallback,
    StoreCallback,
    admit_ip,
    store_guarded,
)

logger = logging.getLogger(__name__)


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server with socket tuning and an IP allow-list."""

    policy: AccessPolicy = AccessPolicy()
    on_refused: RefusedCallback | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        tune_accepted_socket(connection)
        return connection, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if admit_ip(self.policy, str(client_address[0]), self.on_refused):
            return True
        audit.refused(str(client_address[0]), int(client_address[1]), "ip")
        return False


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
        on_refused: RefusedCallback | None = None,
        maximum_pdu_size: int = 0,
        require_called_ae_title: bool = True,
        idle_timeout_s: float = 60.0,
        request_timeout_s: float = 10.0,
        maximum_associations: int = 64,
        maximum_instance_bytes: int = DEFAULT_MAXIMUM_BYTES,
    ) -> None:
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
        self._audits: dict[int, audit.AssociationAudit] = {}  # by id(association)
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
            (evt.EVT_ACCEPTED, self._handle_accepted),
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
        status = store_guarded(self._on_store, instance, self._on_refused)
        record = self._audits.get(id(assoc))
        if record is not None:
            record.count_received(status == SUCCESS, study_uid(instance) if not status else None)
        return status

    def _handle_release(self, event: Any) -> None:
        record = self._audits.pop(id(event.assoc), None)
        if record is not None:
            record.finish("released" if event.event is evt.EVT_RELEASED else "aborted")
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
        _audit_of(event.assoc).finish("rejected: AE title")
        if self._on_refused is not None:
            self._on_refused("ae_title", title)

    def _handle_accepted(self, event: Any) -> None:
        metrics.ASSOCIATIONS.inc()
        self._audits[id(event.assoc)] = _audit_of(event.assoc)


def _audit_of(assoc: Any) -> audit.AssociationAudit:
    """A record for one of pynetdicom's associations, its peer and AE titles filled in."""
    record = audit.AssociationAudit(
        audit.Direction.RECEIVED, str(assoc.requestor.address), int(assoc.requestor.port or 0)
    )
    record.calling_ae_title = str(assoc.requestor.ae_title).strip()
    record.called_ae_title = str(assoc.acceptor.ae_title).strip()
    return record


def _handle_echo(event: Any) -> int:
    metrics.ECHOES.inc()
    return SUCCESS
