"""The one codec: what one end packs, the other parses, and pynetdicom agrees."""

import socket
import struct

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ, P_DATA_TF

from dicomflow.errors import ProtocolError
from dicomflow.net import pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def test_an_associate_rq_is_what_pynetdicom_decodes() -> None:
    body = pdu.associate_rq("PACS", "SENDER", [(CT, EXPLICIT), (CT, IMPLICIT)], 1 << 20)
    decoded = A_ASSOCIATE_RQ()
    decoded.decode(pdu.pdu(pdu.ASSOCIATE_RQ, body))
    assert decoded.called_ae_title == "PACS"
    assert [(c.context_id, c.transfer_syntax) for c in decoded.presentation_context] == [
        (1, [EXPLICIT]),
        (3, [IMPLICIT]),
    ]
    request = pdu.parse_associate_rq(body)
    assert pdu.ae_text(request.calling_ae_title) == "SENDER"
    assert request.maximum_pdu == 1 << 20
    assert [(c.context_id, c.abstract_syntax, c.transfer_syntaxes) for c in request.contexts] == [
        (1, CT, [EXPLICIT]),
        (3, CT, [IMPLICIT]),
    ]


def test_an_undecodable_associate_rq_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="undecodable"):
        pdu.parse_associate_rq(b"\x00\x01\x00")


def test_an_associate_ac_parses_back_and_pynetdicom_agrees() -> None:
    contexts = [
        pdu.context_item(1, pdu.ACCEPTED, EXPLICIT),
        pdu.context_item(3, pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED, IMPLICIT),
    ]
    body = pdu.associate_ac("PACS", "SENDER", contexts, 65536)
    assert pdu.parse_associate_ac(body) == ({1: (0, EXPLICIT), 3: (4, IMPLICIT)}, 65536)
    decoded = A_ASSOCIATE_AC()
    decoded.decode(pdu.pdu(pdu.ASSOCIATE_AC, body))
    assert decoded.user_information.maximum_length == 65536
    with pytest.raises(ProtocolError, match="truncated"):
        pdu.parse_associate_ac(body[:-3])


def test_a_rejection_is_told_in_words() -> None:
    body = pdu.associate_rj(result=1, source=1, reason=7)
    assert pdu.rejection(body) == "permanently (called AE title not recognized)"
    assert pdu.rejection(pdu.associate_rj(result=2, source=3, reason=2)) == (
        "for now (local limit exceeded)"
    )
    assert pdu.rejection(body[:3]) is None


def test_command_sets_parse_back() -> None:
    command = pdu.parse_command(pdu.c_store_rq(7, CT, "1.2.3"))
    assert pdu.us(command, pdu.COMMAND_FIELD) == pdu.C_STORE_RQ
    assert pdu.us(command, pdu.MESSAGE_ID) == 7
    assert pdu.uid(command, pdu.AFFECTED_SOP_INSTANCE_UID) == "1.2.3"
    (length,) = struct.unpack("<I", command[0x0000])
    assert length == len(pdu.c_store_rq(7, CT, "1.2.3")) - 12
    response = pdu.parse_command(pdu.response(pdu.C_STORE_RSP, 7, CT, "1.2.3", 0xA700))
    assert pdu.response_status(response, pdu.C_STORE_RSP, 7) == 0xA700
    with pytest.raises(ProtocolError, match="another message"):
        pdu.response_status(response, pdu.C_STORE_RSP, 8)
    echo = pdu.parse_command(pdu.response(pdu.C_ECHO_RSP, 1, pdu.VERIFICATION, None, 0))
    assert pdu.AFFECTED_SOP_INSTANCE_UID not in echo
    with pytest.raises(ProtocolError, match="CommandField"):
        pdu.parse_command(pdu.element(0x0110, b"\x01\x00"))


def test_a_message_is_cut_into_fragments_pynetdicom_reads() -> None:
    command = pdu.c_store_rq(1, CT, "1.2.3")
    data = bytes(range(256)) * 10
    pieces = [memoryview(data)[:1000], memoryview(data)[1000:]]
    batches = list(pdu.message_pdus(5, command, pieces, len(data), 300))
    assert len(batches) == 2
    stream = b"".join(bytes(buffer) for batch in batches for buffer in batch)
    fragments, received = [], b""
    while stream:
        (length,) = struct.unpack_from(">I", stream, 2)
        decoded = P_DATA_TF()
        decoded.decode(stream[: 6 + length])
        body = stream[6 : 6 + length]
        for context_id, control, fragment in pdu.pdv_items(body):
            assert context_id == 5
            fragments.append(control)
            if not control & pdu.COMMAND:
                received += bytes(fragment)
        stream = stream[6 + length :]
    assert fragments[0] == pdu.COMMAND | pdu.LAST
    assert fragments[1:] == [0] * (len(fragments) - 2) + [pdu.LAST]
    assert received == data


def test_pdv_items_out_of_bounds_are_protocol_errors() -> None:
    item = pdu.command_pdv(1, b"abcd")
    assert [bytes(f) for _, _, f in pdu.pdv_items(item)] == [b"abcd"]
    with pytest.raises(ProtocolError, match="truncated"):
        list(pdu.pdv_items(item + b"\x00\x00"))
    assert len(list(pdu.pdv_items(item + b"\x00\x00", strict=False))) == 1
    with pytest.raises(ProtocolError, match="out of bounds"):
        list(pdu.pdv_items(item[:-1]))


def test_pdus_are_read_whole_and_limited() -> None:
    left, right = socket.socketpair()
    with left, right:
        pdu.send_pdu(left, pdu.RELEASE_RQ, pdu.RELEASE_BODY)
        pdu.send_buffers(left, [pdu.pdv_header(3, 1, 0), b"xyz"])
        assert pdu.read_pdu(right, maximum_data=10, maximum_other=10) == (
            pdu.RELEASE_RQ,
            bytearray(4),
        )
        with pytest.raises(ProtocolError, match="9 bytes is longer than the 8 allowed"):
            pdu.read_pdu(right, maximum_data=8, maximum_other=100)
    left, right = socket.socketpair()
    with left, right:
        pdu.send_pdu(left, pdu.ABORT, pdu.abort(pdu.SERVICE_USER))
        with pytest.raises(ProtocolError, match="expected PDU type 0x01"):
            pdu.read_pdu(right, maximum_data=10, maximum_other=10, expected=pdu.ASSOCIATE_RQ)
    left, right = socket.socketpair()
    with right:
        left.close()
        with pytest.raises(EOFError):
            pdu.read_pdu(right, maximum_data=10, maximum_other=10)


def test_only_what_we_proposed_is_accepted() -> None:
    proposals = [(CT, EXPLICIT), (CT, IMPLICIT), (pdu.VERIFICATION, IMPLICIT)]
    results = {
        1: (pdu.ACCEPTED, EXPLICIT),
        3: (pdu.ACCEPTED, EXPLICIT),  # not the syntax proposed for 3
        5: (pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED, IMPLICIT),
        7: (pdu.ACCEPTED, IMPLICIT),  # never proposed
        2: (pdu.ACCEPTED, EXPLICIT),  # not one of ours
    }
    assert pdu.accepted_contexts(proposals, results) == {1: (CT, EXPLICIT)}
