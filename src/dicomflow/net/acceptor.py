"""A lean C-STORE/C-ECHO acceptor: the upper layer done in one thread per association.

pynetdicom handles every PDU through a state machine, event queues and two
threads per association, and decodes each command set with pydicom. That is
~1.5 ms of Python per instance on a small machine, more than writing and
fsyncing the instance. An SCP that only accepts storage needs little of it:

0. DICOM TLS (with ``tls``, PS3.15 Annex B): the connection's own thread does the
   TLS handshake, within the ``request_timeout_s`` that also bounds the
   A-ASSOCIATE-RQ; at most ``maximum_associations`` connections handshake at once,
   a newer one dropping the one waiting longest
   (:mod:`dicomflow.net.handshakes`). A failed handshake is refused with one log
   line naming the peer and why, counted as ``tls``. The association notes
   ``tls_version`` and ``peer_certificate`` (the certificate's common name).
1. Association: the whole A-ASSOCIATE-RQ (at most 128 KiB, and no other PDU)
   must arrive within ``request_timeout_s`` of the connection, however its
   bytes are paced; it is decoded by :mod:`dicomflow.net.pdu` (with
   pynetdicom's PDU classes). A called AE title other than ours (unless
   ``require_called_ae_title`` is off) or a calling AE title outside the
   allow-list gets an A-ASSOCIATE-RJ (permanent,
   "called/calling AE title not recognized"), and so does (permanent, no reason
   given) a user identity the ``identity_policy`` refuses
   (:mod:`dicomflow.net.user_identity`); only then does the association
   take one of the ``maximum_associations`` slots (transient rejection when
   none is free), so connections that never associate block nobody. Each
   presentation context is accepted when its abstract syntax is a storage SOP
   class (or Verification) and one of its transfer syntaxes is one we store as
   received (:mod:`dicomflow.net.contexts`); the A-ASSOCIATE-AC is packed by
   :mod:`dicomflow.net.pdu` (PS3.8 9.3.3), as every PDU and command set is.
2. Data: P-DATA-TF PDUs are read whole into one buffer (grown as bytes arrive,
   never sized from the declared length alone); their PDVs are command or
   dataset fragments. The command set (implicit VR little endian, group 0000)
   is assembled here from its fragments and parsed by :mod:`dicomflow.net.pdu`;
   the dataset fragments are appended to one buffer as they arrive (never
   joined again), and what that buffer, the PDU
   being read and the decoding really allocate counts against
   ``maximum_held_bytes``. When a C-STORE's dataset is complete, it is checked
   against its command and context (:mod:`dicomflow.net.agreement`),
   ``on_store`` decides its status (errors become statuses in
   :mod:`dicomflow.net.storage`), and the C-STORE-RSP goes back at once. C-ECHO
   is answered with success.
   With a ``query_retrieve`` provider, the Q/R SOP classes
   (:data:`~dicomflow.net.query_retrieve.SOP_CLASSES`, implicit or explicit VR
   little endian) are accepted too, and the SCP/SCU roles a requestor proposes for
   storage SOP classes (the C-GET requestor as storage SCP) are accepted as proposed,
   in the A-ASSOCIATE-AC; C-FIND, C-GET and C-MOVE are answered by
   :mod:`dicomflow.net.qr_scp` in the association's thread (an identifier may hold at
   most ``qr_scp.MAX_IDENTIFIER_BYTES``).
3. End: A-RELEASE-RQ gets A-RELEASE-RP; an A-ABORT, a closed connection, a
   protocol error (A-ABORT sent) or ``idle_timeout_s`` without a whole PDU end
   the association. ``on_release`` is called in every case. After an
   A-ASSOCIATE-RJ or A-ABORT the peer closes the connection (PS3.8 Sta13); the
   acceptor closes it itself after ``ARTIM_S``.

Anything else (other DIMSE services, a PDU out of order, a PDV on a context
that was not accepted) aborts the association with a log line; nothing is
acknowledged that was not stored. pynetdicom's server
(:class:`dicomflow.net.pynetdicom_acceptor.StoreSCP`) stays available as
``receiver = "pynetdicom"``.
"""

import contextlib
import itertools
import logging
import os
import select
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pydicom.uid import UID

from dicomflow import audit, metrics, tls
from dicomflow.dicom.element_values import text_value
from dicomflow.errors import PortInUseError, ProtocolError
from dicomflow.logs import escaped
from dicomflow.net import pdu, qr_scp
from dicomflow.net.agreement import readable_uid
from dicomflow.net.contexts import ACCEPTED_TRANSFER_SYNTAXES, UNCOMPRESSED, storage_contexts
from dicomflow.net.handshakes import PendingHandshakes, failure
from dicomflow.net.pdu import (
    ABORT,
    ABSTRACT_SYNTAX_NOT_SUPPORTED,
    ACCEPTED,
    AFFECTED_SOP_CLASS_UID,
    AFFECTED_SOP_INSTANCE_UID,
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    ASSOCIATE_RQ,
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    COMMAND,
    COMMAND_DATA_SET_TYPE,
    COMMAND_FIELD,
    LAST,
    MESSAGE_ID,
    NO_DATASET,
    P_DATA_TF,
    RELEASE_RP,
    RELEASE_RQ,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    VERIFICATION,
    AssociateRequest,
    Role,
    ae_text,
    uid,
    us,
)
from dicomflow.net.query_retrieve import SOP_CLASSES, QueryRetrieveProvider
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
from dicomflow.net.user_identity import IdentityPolicy, Verdict, shown

logger = logging.getLogger(__name__)

MAX_ASSOCIATE_RQ = 128 << 10  # any PDU but P-DATA; 128 contexts of 10 syntaxes need < 100 kB
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_IDLE_TIMEOUT_S = 60.0
DEFAULT_MAXIMUM_PDU = 16 << 20  # advertised and enforced when none is given
DEFAULT_MAXIMUM_INSTANCE = 4 << 30  # a larger dataset aborts its association


def default_held_bytes() -> int:
    """Half the machine's memory (8 GiB where that cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


# How long a rejecting or aborting acceptor waits for the peer to close (PS3.8 ARTIM).
ARTIM_S = 1.0
HELD_BYTES = 32 << 10  # C-FIND responses held to go out together, at most
STUDY_INSTANCE_UID = 0x0020000D
REJECTIONS = {7: "called AE title", 3: "calling AE title", 2: "too many associations"}


@dataclass
class _Context:
    abstract_syntax: str
    transfer_syntax: UID


@dataclass
class _Message:
    """A DIMSE message being received: its command fragments, its command, then its
    dataset, appended fragment by fragment to one buffer (never joined again)."""

    context_id: int
    command: dict[int, bytes] = field(default_factory=dict)
    fragments: list[bytes | memoryview] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)


class LeanStoreSCP:
    """A running C-STORE/C-ECHO server; same interface as
    :class:`~dicomflow.net.pynetdicom_acceptor.StoreSCP`."""

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
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        maximum_associations: int = 64,
        maximum_instance_bytes: int = DEFAULT_MAXIMUM_INSTANCE,
        maximum_held_bytes: int | None = None,
        require_called_ae_title: bool = True,
        tls: ssl.SSLContext | None = None,
        identity_policy: IdentityPolicy | None = None,
        query_retrieve: QueryRetrieveProvider | None = None,
    ) -> None:
        self.ae_title = ae_title.strip()
        # With a provider, the Q/R SOP classes are accepted too (:mod:`qr_scp`).
        self.query_retrieve = query_retrieve
        # DICOM TLS: each connection's handshake, in its own thread, must end within
        # request_timeout_s; at most maximum_associations connections handshake at once.
        self.tls = tls
        self.handshakes = PendingHandshakes(maximum_associations)
        self.identity_policy = identity_policy or IdentityPolicy()
        self.policy = policy or AccessPolicy()
        self.on_store = on_store
        self.on_release = on_release
        self.on_refused = on_refused
        self.require_called_ae_title = require_called_ae_title
        # A peer may only send P-DATA PDUs this long (we never accept "unlimited": the
        # buffer for a PDU is allocated when its header arrives).
        self.maximum_pdu_size = maximum_pdu_size or DEFAULT_MAXIMUM_PDU
        # A peer has request_timeout_s from its connection to send its whole A-ASSOCIATE-RQ,
        # then idle_timeout_s for each whole PDU (a byte now and then does not count).
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.maximum_associations = maximum_associations
        # Instances are held whole in memory until stored: a peer may not send more, and
        # all associations together may not hold more than maximum_held_bytes.
        self.maximum_instance_bytes = maximum_instance_bytes
        self.maximum_held_bytes = maximum_held_bytes or default_held_bytes()
        self._held = 0
        self._held_lock = threading.Lock()
        self._active = 0
        self._active_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._supported = {str(c.abstract_syntax) for c in storage_contexts()}
        self._syntaxes = [str(uid) for uid in ACCEPTED_TRANSFER_SYNTAXES]
        self._little_endian = {str(uid) for uid in UNCOMPRESSED[:2]}
        self._query_retrieve = set(SOP_CLASSES) if query_retrieve is not None else set()
        try:
            self._server = _Server((ip, port), _Handler, scp=self)
        except OSError as exc:
            raise PortInUseError(f"Cannot listen on {ip}:{port}: {exc.strerror}.") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dicomflow-scp", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop accepting associations and wait for the server thread to end; connections
        still in a TLS handshake are cut off."""
        self.handshakes.cut_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def hold(self, count: int) -> bool:
        """Count ``count`` more bytes held in memory, unless that would pass the limit."""
        with self._held_lock:
            if self._held + count > self.maximum_held_bytes:
                return False
            self._held += count
            return True

    def let_go(self, count: int) -> None:
        with self._held_lock:
            self._held -= count

    def next_association_id(self) -> int:
        return next(self._ids)

    def enter(self) -> bool:
        """Count one more association, unless the limit is reached."""
        with self._active_lock:
            if self._active >= self.maximum_associations:
                return False
            self._active += 1
            return True

    def leave(self) -> None:
        with self._active_lock:
            self._active -= 1

    def roles(self, proposed: dict[str, Role]) -> dict[str, Role]:
        """The SCP/SCU roles accepted as proposed: those of storage SOP classes, when
        C-GET is served (its requestor is the storage SCP)."""
        if self.query_retrieve is None:
            return {}
        return {uid: role for uid, role in proposed.items() if uid in self._supported}

    def negotiate(self, abstract_syntax: str, proposed: list[str]) -> tuple[int, str]:
        """The result and transfer syntax for one proposed presentation context."""
        plain = abstract_syntax == VERIFICATION or abstract_syntax in self._query_retrieve
        if abstract_syntax not in self._supported and not plain:
            return ABSTRACT_SYNTAX_NOT_SUPPORTED, proposed[0] if proposed else ""
        accepted = self._little_endian if plain else self._syntaxes
        for syntax in proposed:
            if syntax in accepted:
                return ACCEPTED, syntax
        return TRANSFER_SYNTAXES_NOT_SUPPORTED, proposed[0] if proposed else ""


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], handler: Any, scp: LeanStoreSCP) -> None:
        self.scp = scp
        super().__init__(address, handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if admit_ip(self.scp.policy, str(client_address[0]), self.scp.on_refused):
            return True
        audit.refused(str(client_address[0]), int(client_address[1]), "ip")
        return False

    def process_request(self, request: Any, client_address: Any) -> None:
        """Count a TLS connection as handshaking before its thread starts (the bound)."""
        if self.scp.tls is not None:
            self.scp.handshakes.begin(request)
        super().process_request(request, client_address)


class _Handler(socketserver.BaseRequestHandler):
    """One association, from A-ASSOCIATE-RQ to release or abort."""

    server: _Server
    request: socket.socket

    def handle(self) -> None:
        tune_accepted_socket(self.request)
        _Association(self.server.scp, self.request, str(self.client_address[0])).run()


class _Association:
    def __init__(self, scp: LeanStoreSCP, connection: socket.socket, ip: str) -> None:
        self.scp = scp
        self.accepted = connection  # the TCP connection; ``connection`` once TLS wraps it
        self.connection = connection
        self.ip = ip
        self.tls_version = ""  # e.g. "TLSv1.3"; "" on a plain connection
        self.peer_certificate = ""  # the common name of the peer's certificate, if any
        self.id = scp.next_association_id()
        self.deadline = time.monotonic() + scp.request_timeout_s  # for the A-ASSOCIATE-RQ
        self.slot = False  # counted among the SCP's associations
        self.calling_ae_title = ""
        self.identity = ""  # the username the peer presented (verified, if checked); "" none
        self.identity_response: bytes | None = None  # a 0x59 sub-item's, to send
        self.contexts: dict[int, _Context] = {}
        self.peer_max_pdu = 0
        self._held: list[bytes | memoryview] = []  # messages waiting to go out with the next
        self._held_bytes = 0
        self.holding = 0  # bytes of the instance being received, counted by the SCP
        self.roles: dict[str, Role] = {}  # the SCP/SCU roles accepted, by SOP class
        provider = scp.query_retrieve
        self.qr = qr_scp.QueryRetrieveSCP(provider, self, scp.ae_title) if provider else None
        self.audit = audit.AssociationAudit(
            audit.Direction.RECEIVED, ip, audit.peer_port(connection)
        )

    # -- life cycle ----------------------------------------------------------------

    def run(self) -> None:
        established = False
        try:
            if self.scp.tls is not None and not self._secure(self.scp.tls):
                return
            established = self._associate()
            if established:
                self._serve()
        except TimeoutError:
            self.audit.result = "aborted: timeout"
            self._timed_out(established)
        except ProtocolError as exc:
            self.audit.result = "aborted: protocol error"
            what = "association" if established else "connection"
            logger.warning("%s %d from %s: %s; aborted", what, self.id, self.ip, escaped(exc))
            self._abort(reason=2)
        except EOFError:
            self.audit.result = "closed before an association"
            logger.debug("connection %d from %s closed before an association", self.id, self.ip)
        except (ConnectionError, OSError) as exc:
            self.audit.result = "connection lost"
            logger.info(
                "association %d from %s: connection lost: %s", self.id, self.ip, escaped(exc)
            )
        except Exception:
            self.audit.result = "aborted: unexpected error"
            logger.exception("association %d from %s: unexpected error; aborted", self.id, self.ip)
            self._abort()
        finally:
            if self.connection is not self.accepted:  # TLS took the socket over
                self.connection.close()
            self._audited()
            self.scp.let_go(self.holding)  # an instance cut off by an abort
            self.holding = 0
            if self.slot:
                self.scp.leave()
            if established and self.scp.on_release is not None:
                try:
                    self.scp.on_release(self.id)
                except Exception:
                    logger.exception("association %d: release handler failed", self.id)

    def _secure(self, context: ssl.SSLContext) -> bool:
        """Do the TLS handshake by the request deadline; a failure is refused, logged
        once with the peer's address and why, and counted."""
        timeout_s = max(self.deadline - time.monotonic(), 0.001)
        try:
            wrapped = tls.handshake(context, self.accepted, server_side=True, timeout_s=timeout_s)
        except (OSError, ValueError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
            waited = self.scp.handshakes.end(self.accepted)
            reason = failure(exc, waited=waited, timeout_s=self.scp.request_timeout_s)
            logger.warning(
                "refused connection %d from %s: TLS handshake failed: %s",
                self.id,
                self.ip,
                escaped(reason),
            )
            self._refuse("tls", self.ip, metrics.REASON_TLS)
            self.audit.result = "refused: tls"
            return False
        self.scp.handshakes.end(self.accepted)
        self.connection = wrapped
        self.tls_version = wrapped.version() or ""
        self.peer_certificate = tls.peer_subject(wrapped)
        return True

    def _audited(self) -> None:
        """Write the association's audit record (TLS and identity where they were set)."""
        record = self.audit
        record.calling_ae_title = self.calling_ae_title
        record.tls = self.tls_version
        record.peer_certificate = self.peer_certificate
        record.identity = self.identity
        record.finish("released")

    def _timed_out(self, established: bool) -> None:
        if established:
            logger.warning(
                "association %d from %s: no whole PDU for %.0fs; aborted",
                self.id,
                self.ip,
                self.scp.idle_timeout_s,
            )
        else:
            logger.warning(
                "connection %d from %s: no whole A-ASSOCIATE-RQ within %.0fs; aborted",
                self.id,
                self.ip,
                self.scp.request_timeout_s,
            )
        self._abort()

    def _associate(self) -> bool:
        request = self._request()
        if not self._admitted(request):
            return False
        self.peer_max_pdu = request.maximum_pdu
        items = []
        for proposed in request.contexts:
            abstract, context_id = proposed.abstract_syntax, proposed.context_id
            result, syntax = self.scp.negotiate(abstract, proposed.transfer_syntaxes)
            if result == ACCEPTED:
                self.contexts[context_id] = _Context(abstract, UID(syntax))
            items.append(pdu.context_item(context_id, result, syntax))
        self.roles = self.scp.roles(request.roles)
        roles = [pdu.role_item(uid, role) for uid, role in self.roles.items()]
        called, calling = request.called_ae_title, request.calling_ae_title
        maximum_pdu, response = self.scp.maximum_pdu_size, self.identity_response
        self._send(
            ASSOCIATE_AC, pdu.associate_ac(called, calling, items, maximum_pdu, response, roles)
        )
        metrics.ASSOCIATIONS.inc()
        return True

    def _request(self) -> AssociateRequest:
        """The peer's A-ASSOCIATE-RQ, whole within the SCP's request timeout."""
        _, body = self._read_pdu(self.deadline, expected=ASSOCIATE_RQ)
        request = pdu.parse_associate_rq(body)
        self.calling_ae_title = ae_text(request.calling_ae_title)
        self.audit.called_ae_title = ae_text(request.called_ae_title)
        return request

    def _admitted(self, request: AssociateRequest) -> bool:
        """Whether the association may go on: AE titles, the user identity, then a free
        slot; else rejected."""
        called = ae_text(request.called_ae_title)
        if self.scp.require_called_ae_title and called != self.scp.ae_title:
            logger.warning(
                "rejected association %d from %s: called AE title %s is not %s",
                self.id,
                self.ip,
                escaped(repr(called)),
                self.scp.ae_title,
            )
            self._refuse("called_ae_title", called, metrics.REASON_CALLED_AE_TITLE)
            self.reject(result=1, source=1, reason=7)  # permanent, called AE not recognized
            return False
        if not self.scp.policy.allows_ae_title(self.calling_ae_title):
            logger.warning(
                "rejected association %d from %s: calling AE title %s is not allowed",
                self.id,
                self.ip,
                escaped(repr(self.calling_ae_title)),
            )
            self._refuse("ae_title", self.calling_ae_title, metrics.REASON_AE_TITLE)
            self.reject(result=1, source=1, reason=3)  # permanent, calling AE not recognized
            return False
        if not self._identified(request):
            return False
        if not self.scp.enter():
            logger.warning("refused association from %s: too many associations", self.ip)
            self.reject(result=2, source=3, reason=2)  # transient, local limit
            return False
        self.slot = True
        return True

    def _identified(self, request: AssociateRequest) -> bool:
        """Whether the SCP accepts the user identity presented (or its absence); else
        rejected (permanent, no reason given: PS3.7 D.3.3.7 names none)."""
        verdict = self.scp.identity_policy.check(request.user_identity, self.calling_ae_title)
        self.identity = verdict.name
        if verdict.accepted:
            self.identity_response = verdict.response
            return True
        self._identity_refused(verdict)
        self.reject(result=1, source=1, reason=1)
        return False

    def _identity_refused(self, verdict: Verdict) -> None:
        logger.warning(
            "rejected association %d from %s: calling AE title %s, user %s: %s",
            self.id,
            self.ip,
            escaped(repr(self.calling_ae_title)),
            shown(verdict.name),
            verdict.problem,
        )
        self._refuse("identity", verdict.name, metrics.REASON_IDENTITY)
        self.audit.result = f"rejected: user identity: {verdict.problem}"

    def _refuse(self, kind: str, value: str, reason: str) -> None:
        metrics.rejected(reason)
        if self.scp.on_refused is not None:
            self.scp.on_refused(kind, value)

    def reject(self, *, result: int, source: int, reason: int) -> None:
        rejection = f"rejected: {REJECTIONS.get(reason, f'reason {reason}')}"
        self.audit.result = self.audit.result or rejection  # a more precise one set already
        with contextlib.suppress(OSError):
            self._send(ASSOCIATE_RJ, pdu.associate_rj(result=result, source=source, reason=reason))
            self._await_close()

    def _abort(self, reason: int = 0) -> None:
        with contextlib.suppress(OSError):
            self._send(ABORT, pdu.abort(pdu.SERVICE_PROVIDER, reason))
            self._await_close()

    def _await_close(self) -> None:
        """Leave the closing to the peer, as PS3.8 Sta13 does, for at most ``ARTIM_S``.

        Closing at once races a requestor that reads the A-ASSOCIATE-RJ or A-ABORT
        after it has seen the connection end (pynetdicom then reports an abort, not
        the rejection). Whatever the peer still sends is read and dropped.
        """
        deadline = time.monotonic() + ARTIM_S
        while (left := deadline - time.monotonic()) > 0:
            self.connection.settimeout(left)
            if not self.connection.recv(65536):
                return

    # -- data phase ----------------------------------------------------------------

    def _serve(self) -> None:
        message: _Message | None = None
        while True:
            try:
                pdu_type, body = self._read_pdu(time.monotonic() + self.scp.idle_timeout_s)
            except EOFError:
                self.audit.result = "closed by the peer"
                logger.info("association %d from %s: closed by the peer", self.id, self.ip)
                return
            if pdu_type == P_DATA_TF:
                message = self._data(body, message)
            elif pdu_type == RELEASE_RQ:
                self._send(RELEASE_RP, pdu.RELEASE_BODY)
                return
            elif pdu_type == ABORT:
                self.audit.result = "aborted by the peer"
                logger.info("association %d from %s: aborted by the peer", self.id, self.ip)
                return
            else:
                raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02x}")

    def _data(self, body: bytearray, message: _Message | None) -> _Message | None:
        """Take the PDVs of one P-DATA-TF PDU; its body counts as held meanwhile."""
        if not self.scp.hold(len(body)):
            self._over_memory()
        try:
            return self._pdvs(body, message)
        finally:
            self.scp.let_go(len(body))

    def _over_memory(self) -> NoReturn:
        metrics.rejected(metrics.REASON_MEMORY)
        raise ProtocolError(
            "instances being received would hold more than"
            f" {self.scp.maximum_held_bytes} bytes in memory (maximum_held_bytes)"
        )

    def _pdvs(self, body: bytearray, message: _Message | None) -> _Message | None:
        for context_id, header, fragment in pdu.pdv_items(body):
            if context_id not in self.contexts:
                raise ProtocolError(f"PDV on presentation context {context_id}, not accepted")
            if message is None:
                message = _Message(context_id)
            elif message.context_id != context_id:
                raise ProtocolError("PDVs of one message on two presentation contexts")
            if header & COMMAND:
                if message.fragments:
                    raise ProtocolError("command fragment after dataset fragments")
                message.fragments.append(fragment)
                if header & LAST:
                    message.command = pdu.parse_command(b"".join(message.fragments))
                    message.fragments = []
                    if us(message.command, COMMAND_DATA_SET_TYPE) == NO_DATASET:
                        self._dispatch(message)
                        message = None
            else:
                if not message.command:
                    raise ProtocolError("dataset fragment before its command")
                self._append(message, fragment)
                if header & LAST:
                    try:
                        self._dispatch(message)
                    finally:
                        self.scp.let_go(self.holding)
                        self.holding = 0
                    message = None
        return message

    def _append(self, message: _Message, fragment: memoryview) -> None:
        """Add a dataset fragment to its instance, counting the memory it really takes
        (the buffer's growth) against the limits; past one, abort."""
        if us(message.command, COMMAND_FIELD) != C_STORE_RQ:
            if len(message.data) + len(fragment) > qr_scp.MAX_IDENTIFIER_BYTES:
                raise ProtocolError(
                    f"an identifier larger than {qr_scp.MAX_IDENTIFIER_BYTES} bytes"
                )
        elif len(message.data) + len(fragment) > self.scp.maximum_instance_bytes:
            metrics.rejected(metrics.REASON_TOO_LARGE)
            raise ProtocolError(
                f"an instance larger than {self.scp.maximum_instance_bytes} bytes"
                " (maximum_instance_bytes)"
            )
        allocated = message.data.__alloc__()
        message.data += fragment
        if not self._reserve(message.data.__alloc__() - allocated):
            self._over_memory()

    def _reserve(self, count: int) -> bool:
        """Count ``count`` more bytes held for the instance being received, if there is room."""
        if not self.scp.hold(count):
            return False
        self.holding += count
        return True

    def _dispatch(self, message: _Message) -> None:
        command = message.command
        field_ = us(command, COMMAND_FIELD)
        message_id = us(command, MESSAGE_ID)
        context = self.contexts[message.context_id]
        if field_ == C_ECHO_RQ:
            metrics.ECHOES.inc()
            self._respond(message.context_id, C_ECHO_RSP, message_id, VERIFICATION, None, SUCCESS)
        elif field_ == C_STORE_RQ:
            status = self._store(command, context, message)
            sop_class_uid = uid(command, AFFECTED_SOP_CLASS_UID)
            sop_instance_uid = uid(command, AFFECTED_SOP_INSTANCE_UID)
            self._respond(
                message.context_id,
                C_STORE_RSP,
                message_id,
                sop_class_uid if readable_uid(sop_class_uid) else context.abstract_syntax,
                sop_instance_uid if readable_uid(sop_instance_uid) else None,  # optional
                status,
            )
        elif self.qr is not None and field_ in qr_scp.REQUESTS:
            syntax = str(context.transfer_syntax)
            request = qr_scp.Request(
                message.context_id, context.abstract_syntax, syntax, command, message.data
            )
            self.qr.handle(field_, request)
        elif self.qr is not None and field_ == C_CANCEL_RQ:
            pass  # its operation has ended already (PS3.7 9.3.2.3): nothing to cancel
        else:
            raise ProtocolError(f"DIMSE command 0x{field_:04x} is not supported")

    def _store(self, command: dict[int, bytes], context: _Context, message: _Message) -> int:
        instance = ReceivedInstance(
            association_id=self.id,
            calling_ae_title=self.calling_ae_title,
            peer_ip=self.ip,
            sop_class_uid=uid(command, AFFECTED_SOP_CLASS_UID),
            sop_instance_uid=uid(command, AFFECTED_SOP_INSTANCE_UID),
            transfer_syntax=context.transfer_syntax,
            raw=message.data,
            maximum_bytes=self.scp.maximum_instance_bytes,
            reserve=self._reserve,
            abstract_syntax=context.abstract_syntax,
        )
        status = store_guarded(self.scp.on_store, instance, self.scp.on_refused)
        self.audit.count_received(status == SUCCESS, study_uid(instance) if not status else None)
        return status

    def _respond(
        self,
        context_id: int,
        field_: int,
        message_id: int,
        sop_class_uid: str,
        sop_instance_uid: str | None,
        status: int,
    ) -> None:
        command = pdu.response(field_, message_id, sop_class_uid, sop_instance_uid, status)
        self._send(P_DATA_TF, pdu.command_pdv(context_id, command))

    # -- what a query/retrieve operation needs (qr_scp.Link) ------------------------

    def send_message(
        self, context_id: int, command: bytes, data: bytes | memoryview, hold: bool = False
    ) -> None:
        """Send a command and its data set in PDUs no longer than the peer takes, after
        the messages held; ``hold``: this one may wait too (up to ``HELD_BYTES`` in all),
        to go out with the next in one system call."""
        limit = self.peer_max_pdu if 0 < self.peer_max_pdu <= DEFAULT_MAXIMUM_PDU else 0
        fragment_bytes = max((limit or DEFAULT_MAXIMUM_PDU) - 6, 1)
        pieces = [data] if len(data) else []
        for buffers in pdu.message_pdus(context_id, command, pieces, len(data), fragment_bytes):
            self._held += buffers
        self._held_bytes += len(command) + len(data)
        if hold and self._held_bytes < HELD_BYTES:
            return
        held, self._held, self._held_bytes = self._held, [], 0
        self.connection.settimeout(self.scp.idle_timeout_s)
        pdu.send_views(self.connection, held)

    def next_command(self, wait: bool) -> tuple[int, dict[int, bytes]] | None:
        """The next command set the peer sends (no data set may come with it); None at
        once when nothing has arrived and not ``wait``."""
        if not wait and not self._readable():
            return None
        fragments: list[bytes] = []
        while True:
            pdu_type, body = self._read_pdu(time.monotonic() + self.scp.idle_timeout_s)
            if pdu_type == ABORT:
                raise ConnectionAbortedError("aborted by the peer")
            if pdu_type != P_DATA_TF:
                raise ProtocolError(f"PDU type 0x{pdu_type:02x} during a query/retrieve")
            for context_id, header, fragment in pdu.pdv_items(body):
                if context_id not in self.contexts or not header & COMMAND:
                    raise ProtocolError("a data set or unknown context during a query/retrieve")
                fragments.append(bytes(fragment))
                if header & LAST:
                    return context_id, pdu.parse_command(b"".join(fragments))

    def _readable(self) -> bool:
        if isinstance(self.connection, ssl.SSLSocket) and self.connection.pending():
            return True
        return bool(select.select([self.connection], [], [], 0)[0])

    def storage_contexts(self, sop_class_uid: str) -> dict[str, int]:
        role = self.roles.get(sop_class_uid)
        if role is None or not role.scp:
            return {}
        return {
            str(context.transfer_syntax): context_id
            for context_id, context in self.contexts.items()
            if context.abstract_syntax == sop_class_uid
        }

    # -- PDUs ----------------------------------------------------------------------

    def _read_pdu(self, deadline: float, expected: int | None = None) -> tuple[int, bytearray]:
        """The next whole PDU, by ``deadline``; only an ``expected`` type, if one is given."""
        return pdu.read_pdu(
            self.connection,
            maximum_data=self.scp.maximum_pdu_size,
            maximum_other=MAX_ASSOCIATE_RQ,
            deadline=deadline,
            expected=expected,
        )

    def _send(self, pdu_type: int, body: bytes) -> None:
        self.connection.settimeout(self.scp.idle_timeout_s)
        pdu.send_pdu(self.connection, pdu_type, body)


def study_uid(instance: ReceivedInstance) -> str | None:
    """The Study Instance UID of an instance that was stored (decoded by then: no cost)."""
    try:
        return text_value(instance.dataset, STUDY_INSTANCE_UID)
    except Exception:  # an instance stored undecoded has no study to report
        return None
