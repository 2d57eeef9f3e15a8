"""The optional receiver on pynetdicom's server (``receiver = "pynetdicom"``), answering
C-ECHO and C-STORE, and with a Q/R provider C-FIND, C-MOVE and C-GET
(:mod:`dicomflow.net.pynetdicom_query_retrieve`); the default is
:mod:`dicomflow.net.acceptor`.

The server only moves bytes and statuses: each C-STORE becomes a
:class:`~dicomflow.net.storage.ReceivedInstance` handed to
:func:`~dicomflow.net.storage.store_guarded`, which checks it, calls the
``on_store`` callback and turns any exception into a failure status and a log
line, never a crash. pynetdicom runs stock, but for where a DICOM TLS handshake is
done: in the connection's own thread, not in the one accepting every connection.

User identities (:mod:`dicomflow.net.user_identity`) are decided when the
A-ASSOCIATE-RQ arrives (``EVT_REQUESTED``), before pynetdicom negotiates: that
is where an association presenting none can be rejected, and where the
rejection can be the one PS3.7 D.3.3.7 and the lean receiver give (permanent,
service user, no reason given; pynetdicom's own is transient). The
``EVT_USER_ID`` handler answers with that decision, and an accepted username
(and passcode) identity gets its positive response, which pynetdicom sends only
for the token types.
"""

import logging
import socket
import ssl
import threading
from typing import Any, cast

from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.transport import ThreadedAssociationServer

from dicomflow import audit, metrics, tls
from dicomflow.dicom.integrity import DEFAULT_MAXIMUM_BYTES
from dicomflow.errors import PortInUseError
from dicomflow.logs import escaped
from dicomflow.net.acceptor import study_uid
from dicomflow.net.contexts import storage_contexts
from dicomflow.net.handshakes import PendingHandshakes, failure
from dicomflow.net.pynetdicom_query_retrieve import (
    QueryRetrieveHandlers,
    query_retrieve_contexts,
)
from dicomflow.net.query_retrieve import QueryRetrieveProvider
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
from dicomflow.net.user_identity import (
    IdentityKind,
    IdentityPolicy,
    IdentityProblem,
    UserIdentity,
    Verdict,
    primary_text,
    shown,
)

logger = logging.getLogger(__name__)


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server with socket tuning, an IP allow-list, and the TLS
    handshake (with :attr:`ssl_context`) done in each connection's thread.

    pynetdicom itself does the handshake as it accepts, in the one thread that
    accepts every connection: a peer that connects and stays silent would stop the
    server. Here the handshake is bounded by ``handshake_timeout_s`` and by
    :class:`~dicomflow.net.handshakes.PendingHandshakes`, as in the lean receiver.
    """

    request_queue_size = 64  # as the lean receiver: a burst of connections waits, unrefused
    policy: AccessPolicy = AccessPolicy()
    on_refused: RefusedCallback | None = None
    handshake_timeout_s = 10.0  # both set by StoreSCP for each server
    handshakes = PendingHandshakes(64)

    def get_request(self) -> tuple[socket.socket, Any]:
        listening = cast(socket.socket, self.socket)
        connection, address = listening.accept()  # pynetdicom's would handshake here
        tune_accepted_socket(connection)
        return connection, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if admit_ip(self.policy, str(client_address[0]), self.on_refused):
            return True
        audit.refused(str(client_address[0]), int(client_address[1]), "ip")
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            self.handshakes.begin(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            request = self._secure(self.ssl_context, request, str(client_address[0]))
            if request is None:
                audit.refused(str(client_address[0]), int(client_address[1]), "tls")
                return
        super().process_request_thread(request, client_address)

    def _secure(
        self, context: ssl.SSLContext, connection: socket.socket, ip: str
    ) -> ssl.SSLSocket | None:
        """The connection after its TLS handshake; None (logged, counted) if that failed."""
        try:
            wrapped = tls.handshake(
                context, connection, server_side=True, timeout_s=self.handshake_timeout_s
            )
        except (OSError, ValueError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
            waited = self.handshakes.end(connection)
            connection.close()  # if the handshake did not take it over
            reason = failure(exc, waited=waited, timeout_s=self.handshake_timeout_s)
            logger.warning("refused connection from %s: TLS handshake failed: %s", ip, reason)
            metrics.rejected(metrics.REASON_TLS)
            if self.on_refused is not None:
                self.on_refused("tls", ip)
            return None
        self.handshakes.end(connection)
        wrapped.settimeout(None)  # as pynetdicom leaves an accepted connection
        return wrapped


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
        tls: ssl.SSLContext | None = None,
        identity_policy: IdentityPolicy | None = None,
        query_retrieve: QueryRetrieveProvider | None = None,
        client_tls: tls.TLSFiles | None = None,
    ) -> None:
        self._on_store = on_store
        self._query_retrieve = (
            QueryRetrieveHandlers(query_retrieve, client_tls) if query_retrieve else None
        )
        self._tls = tls
        self._request_timeout_s = request_timeout_s
        self.identity_policy = identity_policy or IdentityPolicy()
        self._verdicts: dict[int, Verdict] = {}  # by association, from request to its end
        self._require_called = require_called_ae_title
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

    @property
    def handshakes(self) -> PendingHandshakes:
        """The connections in a TLS handshake (as the lean receiver's)."""
        return self._server.handshakes

    def close(self) -> None:
        """Stop accepting associations and wait for the server thread to end (and the
        connections' threads: those still in a TLS handshake are cut off first)."""
        self._server.handshakes.cut_all()
        self._server.shutdown()
        self._server.server_close()

    def identity_of(self, association_id: int) -> str:
        """The username association ``association_id`` presented ("" none)."""
        verdict = self._verdicts.get(association_id)
        return verdict.name if verdict is not None else ""

    def _start(self, ip: str, port: int) -> _Server:
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._handle_requested),
            (evt.EVT_USER_ID, self._handle_user_id),
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, _handle_echo),
            (evt.EVT_RELEASED, self._handle_release),
            (evt.EVT_ABORTED, self._handle_release),
            (evt.EVT_REJECTED, self._handle_rejected),
            (evt.EVT_ACCEPTED, self._handle_accepted),
            (evt.EVT_CONN_OPEN, _note_transport),
        ]
        contexts = storage_contexts()
        if self._query_retrieve is not None:
            handlers += self._query_retrieve.handlers()
            contexts = _with_retrieve_roles(contexts) + query_retrieve_contexts()
        try:
            server = self._ae.make_server(
                (ip, port),
                contexts=contexts,
                evt_handlers=handlers,
                server_class=_Server,
                ssl_context=self._tls,
            )
        except OSError as exc:
            raise PortInUseError(f"Cannot listen on {ip}:{port}: {exc.strerror}.") from exc
        if not isinstance(server, _Server):
            raise TypeError("pynetdicom did not build the requested server class.")
        server.policy = self.policy
        server.on_refused = self._on_refused
        server.handshake_timeout_s = self._request_timeout_s
        server.handshakes = PendingHandshakes(self._ae.maximum_associations)
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

    def _handle_requested(self, event: Any) -> None:
        """Decide the association's user identity; reject it here if refused."""
        assoc = event.assoc
        request = assoc.requestor.primitive
        calling = str(request.calling_ae_title).strip()
        if not self._titles_admitted(calling, str(request.called_ae_title).strip()):
            return  # pynetdicom rejects it for its AE titles
        verdict = self._verdict(assoc.requestor.user_identity, calling)
        self._verdicts[id(assoc)] = verdict
        if verdict.accepted:
            if verdict.response is not None:
                response = UserIdentityNegotiation()
                response.server_response = verdict.response
                assoc.acceptor.add_negotiation_item(response)
            return
        logger.warning(
            "rejected association from %s: calling AE title %s, user %s: %s",
            assoc.requestor.address,
            escaped(repr(calling)),
            shown(verdict.name),
            verdict.problem,
        )
        metrics.rejected(metrics.REASON_IDENTITY)
        if self._on_refused is not None:
            self._on_refused("identity", verdict.name)
        self._verdicts.pop(id(assoc), None)
        record = _audit_of(assoc)
        record.identity = verdict.name
        record.finish(f"rejected: user identity: {verdict.problem}")
        assoc.acse.send_reject(0x01, 0x01, 0x01)  # permanent, service user, no reason given
        assoc.kill()  # as pynetdicom after its own rejections: the RJ is sent, the peer closes

    def _titles_admitted(self, calling: str, called: str) -> bool:
        if self._require_called and called != str(self._ae.ae_title).strip():
            return False
        return self.policy.allows_ae_title(calling)

    def _verdict(self, item: UserIdentityNegotiation | None, calling: str) -> Verdict:
        if item is None:
            return self.identity_policy.check(None, calling)
        try:
            kind = IdentityKind(item.user_identity_type or 0)
        except ValueError:
            return Verdict("", IdentityProblem.UNVERIFIABLE)
        identity = UserIdentity(
            kind=kind,
            primary=primary_text(kind, bytes(item.primary_field or b"")),
            secondary=bytes(item.secondary_field or b""),
            positive_response_requested=bool(item.positive_response_requested),
        )
        return self.identity_policy.check(identity, calling)

    def _handle_user_id(self, event: Any) -> tuple[bool, bytes | None]:
        """pynetdicom's question, answered with what :meth:`_handle_requested` decided
        (it sends a response itself only for token types, which the node does not give)."""
        verdict = self._verdicts.get(id(event.assoc))
        return (verdict is None or verdict.accepted), None

    def _handle_release(self, event: Any) -> None:
        self._verdicts.pop(id(event.assoc), None)
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
        self._verdicts.pop(id(event.assoc), None)
        title = str(event.assoc.requestor.ae_title).strip()
        logger.warning("rejected association from AE title %s", escaped(repr(title)))
        metrics.rejected(metrics.REASON_AE_TITLE)
        _audit_of(event.assoc).finish("rejected: AE title")
        if self._on_refused is not None:
            self._on_refused("ae_title", title)

    def _handle_accepted(self, event: Any) -> None:
        metrics.ASSOCIATIONS.inc()
        record = _audit_of(event.assoc)
        verdict = self._verdicts.get(id(event.assoc))
        record.identity = verdict.name if verdict is not None else ""
        self._audits[id(event.assoc)] = record


def _audit_of(assoc: Any) -> audit.AssociationAudit:
    """A record for one of pynetdicom's associations, its peer and AE titles filled in."""
    record = audit.AssociationAudit(
        audit.Direction.RECEIVED, str(assoc.requestor.address), int(assoc.requestor.port or 0)
    )
    record.calling_ae_title = str(assoc.requestor.ae_title).strip()
    record.called_ae_title = str(assoc.acceptor.ae_title).strip()
    record.tls = getattr(assoc, "tls_version", "")  # noted when its connection opened
    record.peer_certificate = getattr(assoc, "peer_certificate", "")
    return record


def _with_retrieve_roles(contexts: list[Any]) -> list[Any]:
    """The storage contexts, agreeing to a C-GET requestor's role of storage SCP."""
    for context in contexts:
        context.scu_role = True
        context.scp_role = True
    return contexts


def _handle_echo(event: Any) -> int:
    metrics.ECHOES.inc()
    return SUCCESS


def _note_transport(event: Any) -> None:
    """Note on the association how its peer connected, under the lean receiver's names:
    ``tls_version`` ("" when plain) and ``peer_certificate`` (its common name or "")."""
    connection = event.assoc.dul.socket.socket
    secure = isinstance(connection, ssl.SSLSocket)
    event.assoc.tls_version = (connection.version() or "") if secure else ""
    event.assoc.peer_certificate = tls.peer_subject(connection) if secure else ""
