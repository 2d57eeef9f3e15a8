"""The DICOM upper-layer codec: PDUs (PS3.8 9.3) and DIMSE command sets (PS3.7 E),
packed and parsed here for both ends, and read from and sent over a socket here.

Both ends of dicomflow's associations (:mod:`dicomflow.net.acceptor`, the
receiver; :mod:`dicomflow.net.requestor`, the sender) exchange few kinds of PDU
and command set, all of fixed shape: packing them directly costs microseconds,
where pynetdicom's primitives, state machine and pydicom-encoded command sets
cost about a millisecond per message. Neither end packs or parses a byte of a
PDU itself.
"""

import socket
import ssl
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID
from pynetdicom.pdu import A_ASSOCIATE_RQ

from dicomflow.errors import ProtocolError
from dicomflow.net.socket import receive_exactly
from dicomflow.net.user_identity import IdentityKind, UserIdentity, primary_text

VERIFICATION = "1.2.840.10008.1.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_VERSION_NAME = b"DICOMFLOW_010"
IMPLEMENTATION_CLASS_UID = PYNETDICOM_IMPLEMENTATION_UID

# PDU types (PS3.8 9.3.1)
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07
# presentation context results (PS3.8 9.3.3.2)
ACCEPTED, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 0, 3, 4
# command fields (PS3.7 E.1)
C_STORE_RQ, C_STORE_RSP, C_ECHO_RQ, C_ECHO_RSP = 0x0001, 0x8001, 0x0030, 0x8030
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_GET_RQ, C_GET_RSP, C_FIND_RQ, C_FIND_RSP = 0x0010, 0x8010, 0x0020, 0x8020
C_CANCEL_RQ = 0x0FFF
NO_DATASET, WITH_DATASET = 0x0101, 0x0000
# command set elements (group 0000, PS3.7 E.1)
AFFECTED_SOP_CLASS_UID, COMMAND_FIELD, MESSAGE_ID = 0x0002, 0x0100, 0x0110
MESSAGE_ID_RESPONDED_TO, MOVE_DESTINATION, PRIORITY = 0x0120, 0x0600, 0x0700
COMMAND_DATA_SET_TYPE, STATUS, AFFECTED_SOP_INSTANCE_UID = 0x0800, 0x0900, 0x1000
ERROR_COMMENT = 0x0902
REMAINING, COMPLETED, FAILED, WARNING = 0x1020, 0x1021, 0x1022, 0x1023
# items and sub-items of an A-ASSOCIATE (PS3.8 9.3.2, PS3.7 D.3.3)
USER_INFORMATION, MAXIMUM_LENGTH = 0x50, 0x51
ROLE_SELECTION, USER_IDENTITY_RQ, USER_IDENTITY_AC = 0x54, 0x58, 0x59
ASSOCIATE_FIXED = 68  # protocol version, reserved, called and calling AE titles, reserved
# PDV message control header bits (PS3.8 E.2)
COMMAND, LAST = 0x01, 0x02
# A-ABORT sources (PS3.8 9.3.8)
SERVICE_USER, SERVICE_PROVIDER = 0, 2
RELEASE_BODY = b"\x00\x00\x00\x00"
IOV_BATCH = 512
TLS_BATCH_BYTES = 1 << 20
"""Over TLS, small buffers are joined into writes of about this size (no sendmsg there)."""
REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


# -- fields ------------------------------------------------------------------------------


def ae_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def ae_field(value: Any) -> bytes:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.encode("ascii", "replace")[:16].ljust(16, b" ")


def uid_bytes(uid: str) -> bytes:
    return uid.encode("ascii")


def pad_uid(uid: str) -> bytes:
    data = uid.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def pdu(pdu_type: int, body: bytes) -> bytes:
    """A whole PDU: its header and ``body``."""
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


# -- association -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProposedContext:
    """One presentation context of an A-ASSOCIATE-RQ."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass(frozen=True)
class AssociateRequest:
    """An A-ASSOCIATE-RQ as the acceptor needs it; AE titles as the peer sent them."""

    called_ae_title: str
    calling_ae_title: str
    contexts: list[ProposedContext]
    maximum_pdu: int
    user_identity: UserIdentity | None = None
    roles: dict[str, "Role"] = field(default_factory=dict)
    """The SCP/SCU Role Selection sub-items (PS3.7 D.3.3.4), by SOP class UID."""


@dataclass(frozen=True)
class Role:
    """The roles a requestor proposes to take for a SOP class: a C-GET's requestor
    proposes to be the storage SCP (``scp``) on its storage contexts."""

    scu: bool
    scp: bool


def associate_rq(
    called: Any,
    calling: Any,
    proposals: Sequence[tuple[str, str]],
    maximum_pdu: int,
    identity: UserIdentity | None = None,
) -> bytes:
    """The body of an A-ASSOCIATE-RQ proposing one context per (abstract syntax, transfer
    syntax) pair, with the odd context ids 1, 3, 5, ... in order."""
    contexts = [
        item(
            0x20,
            bytes((2 * index + 1, 0, 0, 0))
            + item(0x30, uid_bytes(abstract))
            + item(0x40, uid_bytes(syntax)),
        )
        for index, (abstract, syntax) in enumerate(proposals)
    ]
    extra = user_identity_item(identity) if identity is not None else b""
    return _associate(called, calling, contexts, maximum_pdu, extra)


def parse_associate_rq(body: bytes | bytearray) -> AssociateRequest:
    """The A-ASSOCIATE-RQ in ``body`` (decoded with pynetdicom's PDU class; its User
    Identity sub-item by :func:`parse_user_identity`)."""
    identity = _user_identity_of(body)  # first: its errors said in words of its own
    request = A_ASSOCIATE_RQ()
    try:
        request.decode(struct.pack(">BBI", ASSOCIATE_RQ, 0, len(body)) + body)
    except Exception as exc:
        raise ProtocolError(f"undecodable A-ASSOCIATE-RQ: {exc}") from exc
    user = request.user_information
    return AssociateRequest(
        called_ae_title=request.called_ae_title,
        calling_ae_title=request.calling_ae_title,
        contexts=[
            ProposedContext(
                int(context.context_id or 0),
                str(context.abstract_syntax),
                [str(uid) for uid in context.transfer_syntax],
            )
            for context in request.presentation_context
        ],
        maximum_pdu=int(getattr(user, "maximum_length", 0) or 0) if user else 0,
        user_identity=identity,
        roles=_roles(user),
    )


def _roles(user: Any) -> dict[str, Role]:
    """The role selection sub-items pynetdicom decoded from the user information."""
    if user is None:
        return {}
    return {
        str(sop_class): Role(scu=bool(sub.scu_role), scp=bool(sub.scp_role))
        for sop_class, sub in user.role_selection.items()
    }


def role_item(sop_class_uid: str, role: Role) -> bytes:
    """An SCP/SCU Role Selection sub-item (0x54) of an A-ASSOCIATE-AC accepting ``role``."""
    value = uid_bytes(sop_class_uid)
    return item(ROLE_SELECTION, struct.pack(">H", len(value)) + value + bytes((role.scu, role.scp)))


def _user_identity_of(body: bytes | bytearray) -> UserIdentity | None:
    """The User Identity sub-item of an A-ASSOCIATE-RQ's user information, if any."""
    for item_type, value in _items(body, ASSOCIATE_FIXED, "A-ASSOCIATE-RQ", strict=False):
        if item_type != USER_INFORMATION:
            continue
        for sub_type, sub_value in _items(value, 0, "user information", strict=False):
            if sub_type == USER_IDENTITY_RQ:
                return parse_user_identity(sub_value)
    return None


def _items(
    data: bytes | bytearray, offset: int, what: str, *, strict: bool = True
) -> Iterator[tuple[int, bytes]]:
    """The (type, value) of each item from ``offset`` on: one whose length runs past the
    end is a protocol error; so are trailing bytes too few for a header, if ``strict``."""
    end = len(data)
    while offset < end:
        if offset + 4 > end:
            if not strict:
                return
            raise ProtocolError(f"truncated item in the {what}")
        item_type, _, length = struct.unpack_from(">BBH", data, offset)
        if offset + 4 + length > end:
            raise ProtocolError(f"item 0x{item_type:02x} runs past the end of the {what}")
        yield item_type, bytes(data[offset + 4 : offset + 4 + length])
        offset += 4 + length


def parse_user_identity(value: bytes) -> UserIdentity:
    """A User Identity sub-item's value (PS3.7 D.3.3.7.1: type, positive response
    requested, primary field, secondary field); fields running past it, or an unknown
    type, are a protocol error."""
    if len(value) < 4:
        raise ProtocolError("truncated user identity sub-item")
    kind, wanted, primary_length = struct.unpack_from(">BBH", value, 0)
    end = 4 + primary_length
    if end + 2 > len(value):
        raise ProtocolError("user identity primary field runs past its sub-item")
    (secondary_length,) = struct.unpack_from(">H", value, end)
    if end + 2 + secondary_length > len(value):
        raise ProtocolError("user identity secondary field runs past its sub-item")
    try:
        identity_kind = IdentityKind(kind)
    except ValueError:
        raise ProtocolError(f"user identity type {kind} is not defined (1-5)") from None
    return UserIdentity(
        kind=identity_kind,
        primary=primary_text(identity_kind, value[4:end]),
        secondary=value[end + 2 : end + 2 + secondary_length],
        positive_response_requested=wanted == 1,
    )


def user_identity_item(identity: UserIdentity) -> bytes:
    """The User Identity sub-item (0x58) of an A-ASSOCIATE-RQ for ``identity``.

    Raises:
        ValueError: if the username and passcode do not fit one sub-item (64 KiB).
    """
    primary, secondary = identity.primary_bytes(), identity.secondary
    if not primary:
        raise ValueError("a user identity needs a username (or token)")
    if 6 + len(primary) + len(secondary) > 0xFFFF:
        raise ValueError("the user identity is too long for its sub-item (64 KiB)")
    wanted = 1 if identity.positive_response_requested else 0
    return item(
        USER_IDENTITY_RQ,
        struct.pack(">BBH", int(identity.kind), wanted, len(primary))
        + primary
        + struct.pack(">H", len(secondary))
        + secondary,
    )


def user_identity_ac_item(response: bytes) -> bytes:
    """The User Identity sub-item (0x59) of an A-ASSOCIATE-AC: the server response, of
    zero length for a username (and passcode) identity."""
    return item(USER_IDENTITY_AC, struct.pack(">H", len(response)) + response)


def user_identity_response(body: bytes | bytearray) -> bytes | None:
    """The server response of an A-ASSOCIATE-AC's User Identity sub-item; None without one."""
    for item_type, value in _items(body, ASSOCIATE_FIXED, "A-ASSOCIATE-AC", strict=False):
        if item_type != USER_INFORMATION:
            continue
        for sub_type, sub_value in _items(value, 0, "user information", strict=False):
            if sub_type == USER_IDENTITY_AC:
                if len(sub_value) < 2:
                    raise ProtocolError("truncated user identity response")
                (length,) = struct.unpack_from(">H", sub_value, 0)
                if 2 + length > len(sub_value):
                    raise ProtocolError("user identity server response runs past its sub-item")
                return sub_value[2 : 2 + length]
    return None


def context_item(context_id: int, result: int, syntax: str) -> bytes:
    """One presentation context of an A-ASSOCIATE-AC."""
    sub_item = item(0x40, uid_bytes(syntax))
    return item(0x21, bytes((context_id, 0, result, 0)) + sub_item)


def associate_ac(
    called: Any,
    calling: Any,
    contexts: list[bytes],
    maximum_pdu: int,
    identity_response: bytes | None = None,
    roles: Sequence[bytes] = (),
) -> bytes:
    """The body of an A-ASSOCIATE-AC with ``contexts`` (:func:`context_item`), the
    ``roles`` accepted (:func:`role_item`), and a User Identity sub-item when there is an
    ``identity_response`` (even empty)."""
    extra = b"".join(roles)
    if identity_response is not None:
        extra += user_identity_ac_item(identity_response)
    return _associate(called, calling, contexts, maximum_pdu, extra)


def _associate(
    called: Any, calling: Any, contexts: Iterable[bytes], maximum_pdu: int, extra: bytes = b""
) -> bytes:
    """An A-ASSOCIATE-RQ or -AC body; ``extra``: user information sub-items after ours."""
    user = b"".join(
        (
            item(MAXIMUM_LENGTH, struct.pack(">I", maximum_pdu)),
            item(0x52, uid_bytes(IMPLEMENTATION_CLASS_UID)),
            item(0x55, IMPLEMENTATION_VERSION_NAME),
            extra,
        )
    )
    return b"".join(
        (
            struct.pack(">HH", 1, 0),
            ae_field(called),
            ae_field(calling),
            b"\x00" * 32,
            item(0x10, uid_bytes(APPLICATION_CONTEXT)),
            *contexts,
            item(0x50, user),
        )
    )


def parse_associate_ac(body: bytes | bytearray) -> tuple[dict[int, tuple[int, str]], int]:
    """The result and transfer syntax of each presentation context, and the peer's maximum PDU."""
    results: dict[int, tuple[int, str]] = {}
    maximum_pdu = 0
    offset = 68  # protocol version, reserved, called and calling AE titles, reserved
    while offset + 4 <= len(body):
        item_type, _, length = struct.unpack_from(">BBH", body, offset)
        value = body[offset + 4 : offset + 4 + length]
        if len(value) < length:
            raise ProtocolError("truncated A-ASSOCIATE-AC")
        if item_type == 0x21 and length >= 4:
            syntax = ""
            if length >= 8 and value[4] == 0x40:
                (size,) = struct.unpack_from(">H", value, 6)
                syntax = bytes(value[8 : 8 + size]).decode("ascii", "replace").rstrip("\x00 ")
            results[value[0]] = (value[2], syntax)
        elif item_type == 0x50:
            sub = 0
            while sub + 4 <= len(value):
                sub_type, _, sub_length = struct.unpack_from(">BBH", value, sub)
                if sub_type == 0x51 and sub_length == 4:
                    (maximum_pdu,) = struct.unpack_from(">I", value, sub + 4)
                sub += 4 + sub_length
        offset += 4 + length
    return results, maximum_pdu


def accepted_contexts(
    proposals: Sequence[tuple[str, str]], results: dict[int, tuple[int, str]]
) -> dict[int, tuple[str, str]]:
    """The proposals of an :func:`associate_rq` the peer accepted, by context id, from the
    results :func:`parse_associate_ac` found (an answer for a context we did not propose,
    or with another transfer syntax than proposed, accepts nothing)."""
    accepted: dict[int, tuple[str, str]] = {}
    for context_id, (result, syntax) in results.items():
        index = (context_id - 1) // 2  # ours are 1, 3, 5, ...: proposal 0, 1, 2, ...
        if result != ACCEPTED or context_id % 2 == 0 or index >= len(proposals):
            continue
        if proposals[index][1] == syntax:
            accepted[context_id] = proposals[index]
    return accepted


def associate_rj(*, result: int, source: int, reason: int) -> bytes:
    """The body of an A-ASSOCIATE-RJ."""
    return bytes((0, result, source, reason))


def rejection(body: bytes | bytearray) -> str | None:
    """Why an A-ASSOCIATE-RJ rejected the association, in words; None if it is too short."""
    if len(body) < 4:
        return None
    result, source, reason = body[1], body[2], body[3]
    why = REJECT_REASONS.get((source, reason), f"source {source}, reason {reason}")
    kind = "permanently" if result == 1 else "for now"
    return f"{kind} ({why})"


def abort(source: int, reason: int = 0) -> bytes:
    """The body of an A-ABORT."""
    return bytes((0, 0, source, reason))


# -- data: PDVs and command sets ----------------------------------------------------------


def pdv_header(length: int, context_id: int, control: int) -> bytes:
    """The P-DATA-TF PDU header and the PDV item header of one fragment of ``length`` bytes."""
    return struct.pack(">BBIIBB", P_DATA_TF, 0, length + 6, length + 2, context_id, control)


def command_pdv(context_id: int, command: bytes) -> bytes:
    """The body of a P-DATA-TF PDU holding a whole command set, as one PDV item."""
    return struct.pack(">IBB", len(command) + 2, context_id, COMMAND | LAST) + command


def message_pdus(
    context_id: int,
    command: bytes,
    pieces: Iterable[bytes | memoryview],
    total: int,
    fragment_bytes: int,
) -> Iterator[list[bytes | memoryview]]:
    """A DIMSE message as buffers of P-DATA-TF PDUs of one fragment each, no fragment
    longer than ``fragment_bytes``: the command, then the ``total`` bytes of its data set
    taken from ``pieces``. One list of buffers per piece (the command with the first);
    each list may be sent once the previous one is."""
    buffers: list[bytes | memoryview] = [pdv_header(len(command), context_id, COMMAND | LAST)]
    buffers.append(command)
    done = 0
    for piece in pieces:
        for start in range(0, len(piece), fragment_bytes):
            chunk = piece[start : start + fragment_bytes]
            done += len(chunk)
            control = LAST if done == total else 0x00
            buffers += [pdv_header(len(chunk), context_id, control), chunk]
        yield buffers
        buffers = []
    if buffers:
        yield buffers


def pdv_items(
    body: bytes | bytearray, *, strict: bool = True
) -> Iterator[tuple[int, int, memoryview]]:
    """The PDV items of a P-DATA-TF PDU: (context id, message control header, fragment).

    Trailing bytes too few for an item header are a protocol error, unless not
    ``strict`` (the requestor reading responses has always let them pass).
    """
    view = memoryview(body)
    offset, end = 0, len(body)
    while offset < end:
        if offset + 6 > end:
            if not strict:
                return
            raise ProtocolError("truncated PDV item")
        length, context_id, header = struct.unpack_from(">IBB", view, offset)
        if length < 2 or offset + 4 + length > end:
            raise ProtocolError("PDV item length out of bounds")
        yield context_id, header, view[offset + 6 : offset + 4 + length]
        offset += 4 + length


def element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def command_set(*elements: tuple[int, bytes]) -> bytes:
    """A command set (implicit VR little endian): its group length, then ``elements``."""
    body = b"".join(element(number, value) for number, value in elements)
    return element(0x0000, struct.pack("<I", len(body))) + body


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def c_store_rq(message_id: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    return command_set(
        (AFFECTED_SOP_CLASS_UID, pad_uid(sop_class_uid)),
        (COMMAND_FIELD, _us(C_STORE_RQ)),
        (MESSAGE_ID, _us(message_id)),
        (PRIORITY, _us(0)),  # medium
        (COMMAND_DATA_SET_TYPE, _us(0)),  # a dataset follows
        (AFFECTED_SOP_INSTANCE_UID, pad_uid(sop_instance_uid)),
    )


def c_echo_rq(message_id: int) -> bytes:
    return command_set(
        (AFFECTED_SOP_CLASS_UID, pad_uid(VERIFICATION)),
        (COMMAND_FIELD, _us(C_ECHO_RQ)),
        (MESSAGE_ID, _us(message_id)),
        (COMMAND_DATA_SET_TYPE, _us(NO_DATASET)),
    )


def c_move_rq(message_id: int, sop_class_uid: str, destination_ae_title: str) -> bytes:
    return command_set(
        (AFFECTED_SOP_CLASS_UID, pad_uid(sop_class_uid)),
        (COMMAND_FIELD, _us(C_MOVE_RQ)),
        (MESSAGE_ID, _us(message_id)),
        (MOVE_DESTINATION, ae_field(destination_ae_title)),
        (PRIORITY, _us(0)),  # medium
        (COMMAND_DATA_SET_TYPE, _us(0)),  # an identifier follows
    )


def response(
    command_field: int,
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str | None,
    status: int,
) -> bytes:
    """The command set of a response without a data set (C-STORE-RSP, C-ECHO-RSP)."""
    elements = [
        (AFFECTED_SOP_CLASS_UID, pad_uid(sop_class_uid)),
        (COMMAND_FIELD, _us(command_field)),
        (MESSAGE_ID_RESPONDED_TO, _us(message_id)),
        (COMMAND_DATA_SET_TYPE, _us(NO_DATASET)),
        (STATUS, _us(status)),
    ]
    if sop_instance_uid is not None:
        elements.append((AFFECTED_SOP_INSTANCE_UID, pad_uid(sop_instance_uid)))
    return command_set(*elements)


def query_response(
    command_field: int,
    message_id: int,
    sop_class_uid: str,
    status: int,
    *,
    with_dataset: bool = False,
    counts: tuple[int, int, int, int] | None = None,
    error_comment: str = "",
) -> bytes:
    """The command set of a C-FIND, C-GET or C-MOVE response (PS3.7 9.3.2-9.3.4): an
    identifier follows ``with_dataset``; ``counts`` are the remaining, completed, failed
    and warning sub-operations; ``error_comment`` (at most 64 characters) says why a
    request failed."""
    elements = [
        (AFFECTED_SOP_CLASS_UID, pad_uid(sop_class_uid)),
        (COMMAND_FIELD, _us(command_field)),
        (MESSAGE_ID_RESPONDED_TO, _us(message_id)),
        (COMMAND_DATA_SET_TYPE, _us(WITH_DATASET if with_dataset else NO_DATASET)),
        (STATUS, _us(status)),
    ]
    if error_comment:
        text = error_comment.encode("ascii", "replace")[:64]
        elements.append((ERROR_COMMENT, text + b" " * (len(text) % 2)))
    if counts is not None:
        for number, count in zip((REMAINING, COMPLETED, FAILED, WARNING), counts, strict=True):
            elements.append((number, _us(min(count, 0xFFFF))))
    return command_set(*elements)


def parse_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set (implicit VR little endian, group 0000)."""
    elements: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            raise ProtocolError("truncated command set")
        group, element, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        if group != 0x0000 or offset + length > end:
            raise ProtocolError("malformed command set")
        elements[element] = data[offset : offset + length]
        offset += length
    if COMMAND_FIELD not in elements:
        raise ProtocolError("command set without CommandField")
    return elements


def us(command: dict[int, bytes], element: int) -> int:
    value = command.get(element, b"")
    return int(struct.unpack("<H", value[:2])[0]) if len(value) >= 2 else 0


def uid(command: dict[int, bytes], element: int) -> str:
    return command.get(element, b"").decode("ascii", "replace").rstrip("\x00 ")


def response_status(command: dict[int, bytes], command_field: int, message_id: int) -> int:
    """The status of a response, checked to answer ``message_id`` with ``command_field``."""
    if us(command, COMMAND_FIELD) != command_field:
        raise ProtocolError(f"response 0x{us(command, COMMAND_FIELD):04x} unexpected")
    if us(command, MESSAGE_ID_RESPONDED_TO) != message_id:
        raise ProtocolError("a response to another message")
    if STATUS not in command:
        raise ProtocolError("a response without a status")
    return us(command, STATUS)


# -- over a socket --------------------------------------------------------------------------


def read_pdu(
    connection: socket.socket,
    *,
    maximum_data: int,
    maximum_other: int,
    deadline: float | None = None,
    expected: int | None = None,
) -> tuple[int, bytearray]:
    """The next whole PDU: its type and body, by ``deadline`` if one is given (else
    within the socket's timeout per receive).

    Raises:
        EOFError: if the peer closes the connection first.
        ProtocolError: if the PDU is not of the ``expected`` type, or longer than
            ``maximum_data`` (P-DATA-TF) or ``maximum_other`` (any other type).
        TimeoutError: past ``deadline``.
    """
    header = receive_exactly(connection, 6, deadline)
    if len(header) < 6:
        raise EOFError("the peer closed the connection")
    pdu_type, _, length = struct.unpack(">BBI", header)
    if expected is not None and pdu_type != expected:
        raise ProtocolError(f"expected PDU type 0x{expected:02x}, got 0x{pdu_type:02x}")
    limit = maximum_data if pdu_type == P_DATA_TF else maximum_other
    if length > limit:
        raise ProtocolError(f"PDU of {length} bytes is longer than the {limit} allowed")
    body = receive_exactly(connection, length, deadline)
    if len(body) < length:
        raise EOFError("the peer closed the connection")
    return pdu_type, body


def send_pdu(connection: socket.socket, pdu_type: int, body: bytes) -> None:
    connection.sendall(pdu(pdu_type, body))


def send_buffers(connection: socket.socket, buffers: list[Any]) -> None:
    """Send ``buffers`` in as few system calls as the kernel takes."""
    views = [memoryview(buffer) for buffer in buffers if len(buffer)]
    index = 0
    while index < len(views):
        sent = connection.sendmsg(views[index : index + IOV_BATCH])
        while sent and index < len(views):
            size = len(views[index])
            if sent >= size:
                sent -= size
                index += 1
            else:
                views[index] = views[index][sent:]
                sent = 0


def send_views(connection: socket.socket, views: list[Any]) -> None:
    """Send ``views`` in order: with ``sendmsg`` on a plain socket; on a TLS one, which has
    no ``sendmsg``, joined into writes of about ``TLS_BATCH_BYTES`` (a write per view
    would cost a TLS record and a system call each)."""
    if not isinstance(connection, ssl.SSLSocket):
        send_buffers(connection, views)
        return
    batch: list[Any] = []
    size = 0
    for view in views:
        batch.append(view)
        size += len(view)
        if size >= TLS_BATCH_BYTES:
            connection.sendall(b"".join(batch) if len(batch) > 1 else batch[0])
            batch, size = [], 0
    if batch:
        connection.sendall(b"".join(batch))
