"""DICOM upper-layer PDUs (PS3.8 9.3) and DIMSE command sets (PS3.7 E), packed and parsed here.

Both ends of dicomflow's lean associations (:mod:`dicomflow.net.lean`, the
acceptor; :mod:`dicomflow.net.scu`, the requestor) exchange few kinds of PDU
and command set, all of fixed shape: packing them directly costs microseconds,
where pynetdicom's primitives, state machine and pydicom-encoded command sets
cost about a millisecond per message.
"""

import struct
from typing import Any

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID

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
NO_DATASET = 0x0101


class ProtocolError(Exception):
    """The peer broke the protocol: the association is aborted."""


def ae_text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def ae_field(value: Any) -> bytes:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    return text.encode("ascii", "replace")[:16].ljust(16, b" ")


def uid_bytes(uid: str) -> bytes:
    return uid.encode("ascii")


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def context_item(context_id: int, result: int, syntax: str) -> bytes:
    sub_item = item(0x40, uid_bytes(syntax))
    return item(0x21, bytes((context_id, 0, result, 0)) + sub_item)


def associate_ac(called: Any, calling: Any, contexts: list[bytes], max_pdu: int) -> bytes:
    user = b"".join(
        (
            item(0x51, struct.pack(">I", max_pdu)),
            item(0x52, uid_bytes(IMPLEMENTATION_CLASS_UID)),
            item(0x55, IMPLEMENTATION_VERSION_NAME),
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
    if 0x0100 not in elements:
        raise ProtocolError("command set without CommandField")
    return elements


def us(command: dict[int, bytes], element: int) -> int:
    value = command.get(element, b"")
    return int(struct.unpack("<H", value[:2])[0]) if len(value) >= 2 else 0


def uid(command: dict[int, bytes], element: int) -> str:
    return command.get(element, b"").decode("ascii", "replace").rstrip("\x00 ")


def pad_uid(uid: str) -> bytes:
    data = uid.encode("ascii")
    return data + b"\x00" if len(data) % 2 else data


def element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0x0000, element, len(value)) + value
