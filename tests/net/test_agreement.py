"""A C-STORE whose command, context and dataset disagree is refused with a status, and the
node stores nothing of it."""

import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.node import Node
from dicomflow.net.pdu import VERIFICATION, element, parse_command, us
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor
from support import association_request, wait_for

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
ECHO_CONTEXT, CT_CONTEXT = 1, 3


class HeldInstance(AbstractInput):
    def validate(self) -> bool:
        return False


class KeepingPipeline(AbstractPipeline):
    """Keeps every instance it receives in the spool."""

    input = {"any": HeldInstance}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return None


class RawAssociation:
    """An association whose PDUs are packed by hand: a peer may send anything."""

    def __init__(self, port: int) -> None:
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        contexts = (
            (VERIFICATION, IMPLICIT_VR_LITTLE_ENDIAN),
            (str(CTImageStorage), str(ExplicitVRLittleEndian)),
        )
        self.connection.sendall(association_request(contexts=contexts))
        pdu_type, _ = self.read_pdu()
        assert pdu_type == 0x02  # A-ASSOCIATE-AC
        self.message_id = 0

    def read_pdu(self) -> tuple[int, bytes]:
        header = self._exactly(6)
        pdu_type, _, length = struct.unpack(">BBI", header)
        return pdu_type, self._exactly(length)

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.connection.recv(count - len(data))
            if not chunk:
                raise EOFError("the node closed the connection")
            data += chunk
        return data

    def c_store(self, context_id: int, sop_class: bytes, sop_instance: bytes, data: bytes) -> int:
        """Send one C-STORE-RQ and its dataset; the response's status."""
        self.message_id += 1
        fields = [
            element(0x0002, even(sop_class)),
            element(0x0100, struct.pack("<H", 0x0001)),
            element(0x0110, struct.pack("<H", self.message_id)),
            element(0x0700, struct.pack("<H", 0)),
            element(0x0800, struct.pack("<H", 0x0000)),
            element(0x1000, even(sop_instance)),
        ]
        body = b"".join(fields)
        command = element(0x0000, struct.pack("<I", len(body))) + body
        self._p_data(context_id, 0x03, command)
        self._p_data(context_id, 0x02, data)
        pdu_type, pdu = self.read_pdu()
        assert pdu_type == 0x04, f"PDU type 0x{pdu_type:02x} instead of a response"
        return us(parse_command(pdu[6:]), 0x0900)

    def _p_data(self, context_id: int, header: int, value: bytes) -> None:
        pdv = struct.pack(">IBB", len(value) + 2, context_id, header) + value
        self.connection.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)

    def release(self) -> None:
        self.connection.sendall(struct.pack(">BBI", 0x05, 0, 4) + b"\x00" * 4)
        assert self.read_pdu()[0] == 0x06
        self.connection.close()


def even(value: bytes) -> bytes:
    return value + b"\x00" if len(value) % 2 else value


def encoded(dataset: Dataset) -> bytes:
    """``dataset`` in Explicit VR Little Endian, without file meta."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def ct() -> Dataset:
    [dataset] = make_ct_series(1, rows=16, columns=16)
    return dataset


def uids(dataset: Dataset) -> tuple[bytes, bytes]:
    return str(dataset.SOPClassUID).encode(), str(dataset.SOPInstanceUID).encode()


def other_instance_uid(dataset: Dataset) -> tuple[int, bytes, bytes, bytes]:
    return CT_CONTEXT, uids(dataset)[0], generate_uid().encode(), encoded(dataset)


def other_class_uid(dataset: Dataset) -> tuple[int, bytes, bytes, bytes]:
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage, in a CT context
    return CT_CONTEXT, str(CTImageStorage).encode(), uids(dataset)[1], encoded(dataset)


def on_verification(dataset: Dataset) -> tuple[int, bytes, bytes, bytes]:
    return ECHO_CONTEXT, *uids(dataset), encoded(dataset)


def non_ascii_uid(dataset: Dataset) -> tuple[int, bytes, bytes, bytes]:
    sop_class, sop_instance = uids(dataset)
    return CT_CONTEXT, sop_class, sop_instance[:-1] + b"\xe9", encoded(dataset)


def short_pixel_data(dataset: Dataset) -> tuple[int, bytes, bytes, bytes]:
    dataset.PixelData = bytes(16 * 15 * 2)  # one row short
    return CT_CONTEXT, *uids(dataset), encoded(dataset)


def too_many_frames(dataset: Dataset) -> tuple[int, bytes, bytes, bytes]:
    dataset.NumberOfFrames = 2  # the pixels of one
    return CT_CONTEXT, *uids(dataset), encoded(dataset)


@pytest.fixture(params=["lean", "pynetdicom"])
def node(make_node: Any, request: pytest.FixtureRequest) -> Iterator[Node]:
    yield make_node(KeepingPipeline, receiver=request.param)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(other_instance_uid, 0xA900, id="instance-uid-differs"),
        pytest.param(other_class_uid, 0xA900, id="class-uid-differs"),
        pytest.param(on_verification, 0x0122, id="on-verification-context"),
        pytest.param(non_ascii_uid, 0xC210, id="non-ascii-command-uid"),
        pytest.param(short_pixel_data, 0xA900, id="pixel-data-short"),
        pytest.param(too_many_frames, 0xA900, id="pixel-data-frames"),
    ],
)
def test_a_c_store_that_disagrees_is_refused_and_nothing_is_stored(
    node: Node, caplog: pytest.LogCaptureFixture, build: Any, expected: int
) -> None:
    association = RawAssociation(node.port)
    context_id, sop_class, sop_instance, data = build(ct())

    assert association.c_store(context_id, sop_class, sop_instance, data) == expected

    good = ct()
    assert association.c_store(CT_CONTEXT, *uids(good), encoded(good)) == 0x0000  # still served
    association.release()
    assert node.counters.refused == 1 and node.counters.received == 1
    node.spool.settle()
    assert [path.stem for path in node.spool.root.rglob("*.dcm")] == [str(good.SOPInstanceUID)]
    [line] = [r.getMessage() for r in caplog.records if r.name == "dicomflow.net.storage"]
    assert f"refused with status 0x{expected:04X}" in line


def test_storescu_with_pixel_data_shorter_than_its_rows_is_refused(
    node: Node, tmp_path: Path
) -> None:
    [good, short] = make_ct_series(2, rows=16, columns=16)
    short.PixelData = bytes(16 * 16)  # 8 bits of a 16-bit image
    files = write_series([good, short], tmp_path / "series")

    command = ["storescu", "-v", "-aec", "DICOMFLOW", "127.0.0.1", str(node.port)]
    result = subprocess.run([*command, *map(str, files)], capture_output=True, text=True)

    assert "Error: DataSetDoesNotMatchSOPClass" in result.stderr, result.stderr
    wait_for(lambda: node.counters.received == 1, timeout_s=10, what="the good instance")
    assert node.counters.refused == 1
