"""A seeded mutation fuzzer of the node's receive path (used by ``test_fuzz.py`` and
``bench/fuzz.py``).

Each case is one TCP connection to a running node: a valid exchange (A-ASSOCIATE-RQ,
a C-ECHO or a C-STORE in one to three fragments, A-RELEASE-RQ) with one part mutated:
the association request, the command set, the dataset (both re-framed so that the
mutation reaches the parser) or the raw bytes on the wire (lengths no longer agree),
or the PDUs dropped, repeated or swapped. The client sends everything, half-closes and
reads until the node closes; a case is classified by what came back. Exceptions that
escape an association thread (``socketserver``'s ``handle_error``, or
``threading.excepthook``) are recorded with the case that caused them.
"""

import contextlib
import itertools
import random
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dicomflow.dicom.factory import make_dataset
from dicomflow.net.pdu import ae_field, element, item, pad_uid
from dicomflow.node import AbstractInput, AbstractPipeline, AbstractProcessor

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
IMPLICIT, EXPLICIT, DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"
CONTEXTS = {1: (VERIFICATION, IMPLICIT), 3: (CT_IMAGE, EXPLICIT), 5: (CT_IMAGE, IMPLICIT)}
CONTEXTS[7] = (CT_IMAGE, DEFLATED)
TARGETS = ("associate", "command", "dataset", "wire", "sequence")
INTERESTING = (0x00, 0x01, 0x02, 0x03, 0x07, 0x0A, 0x20, 0x7F, 0x80, 0xC3, 0xFE, 0xFF)
INTERESTING_WORDS = (0, 1, 2, 6, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000)
INTERESTING_WORDS += (0x00FFFFFF, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF)
PDU_ABORT, PDU_REJECT, PDU_DATA, PDU_RELEASE_RP, PDU_ACCEPT = 0x07, 0x03, 0x04, 0x06, 0x02


class NeverComplete(AbstractInput):
    """Takes every instance and never validates: received instances just wait."""

    required_tags = ["SOPInstanceUID"]

    def validate(self) -> bool:
        return False


class FuzzedPipeline(AbstractPipeline):
    ae_title = "DICOMFLOW"
    input = {"any": NeverComplete}

    class Processor(AbstractProcessor):
        def process(self, input_container: Any) -> Any:
            return []


@dataclass
class Case:
    index: int
    target: str
    data: bytes


@dataclass
class Outcomes:
    """What every case ended in, and the exceptions that escaped the node."""

    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    exceptions: list[str] = field(default_factory=list)
    hangs: list[int] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(self.counts.values())


# -- valid exchanges -------------------------------------------------------------------------


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


def associate_rq() -> bytes:
    contexts = b"".join(
        item(0x20, bytes((cid, 0, 0, 0)) + item(0x30, a.encode()) + item(0x40, s.encode()))
        for cid, (a, s) in CONTEXTS.items()
    )
    user = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4"))
    head = struct.pack(">HH", 1, 0) + ae_field("DICOMFLOW") + ae_field("FUZZER") + bytes(32)
    return head + item(0x10, b"1.2.840.10008.3.1.1.1") + contexts + user


def command(field_: int, message_id: int, sop_class: str, sop_instance: str | None) -> bytes:
    elements = [
        element(0x0002, pad_uid(sop_class)),
        element(0x0100, struct.pack("<H", field_)),
        element(0x0110, struct.pack("<H", message_id)),
        element(0x0800, struct.pack("<H", 0x0101 if sop_instance is None else 0)),
    ]
    if sop_instance is not None:
        elements += [element(0x0700, b"\x00\x00"), element(0x1000, pad_uid(sop_instance))]
    body = b"".join(elements)
    return element(0x0000, struct.pack("<I", len(body))) + body


def p_data(context_id: int, control: int, fragments: list[bytes]) -> list[bytes]:
    """One P-DATA-TF PDU per fragment; the last carries the "last fragment" bit."""
    pdus = []
    for index, fragment in enumerate(fragments):
        bits = control | (0x02 if index == len(fragments) - 1 else 0x00)
        pdv = struct.pack(">IBB", len(fragment) + 2, context_id, bits) + fragment
        pdus.append(pdu(PDU_DATA, pdv))
    return pdus


def encoded_dataset(syntax: str, seed: int) -> tuple[str, bytes]:
    """A small CT instance (its SOP Instance UID and dataset bytes) in ``syntax``; the
    same for the same seed."""
    root = f"1.2.826.0.1.3680043.10.1.{seed % 1_000_000}"
    dataset = make_dataset(
        PatientID=f"FUZZ{seed % 7}",
        SOPInstanceUID=f"{root}.1",
        StudyInstanceUID=f"{root}.2",
        SeriesInstanceUID=f"{root}.3",
        FrameOfReferenceUID=f"{root}.4",
    )
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, syntax == IMPLICIT
    write_dataset(buffer, dataset)
    data = buffer.getvalue()
    if syntax == DEFLATED:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        data = compressor.compress(data) + compressor.flush()
        data += b"\x00" * (len(data) % 2)
    return str(dataset.SOPInstanceUID), data


class Generator:
    """Seeded cases: the same seed gives the same cases."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.datasets = {
            cid: encoded_dataset(s, seed) for cid, (_, s) in CONTEXTS.items() if cid > 1
        }

    def case(self, index: int) -> Case:
        target = self.random.choice(TARGETS)
        context_id = self.random.choice((1, 3, 5, 7))
        rq = associate_rq()
        if target == "associate":
            rq = self.mutate(rq)
        if context_id == 1:
            cmd = command(0x0030, index & 0xFFFF, VERIFICATION, None)
            data = b""
        else:
            uid, data = self.datasets[context_id]
            cmd = command(0x0001, index & 0xFFFF, CT_IMAGE, uid)
        if target == "command":
            cmd = self.mutate(cmd)
        if target == "dataset" and data:
            data = self.mutate(data)
        pdus = [pdu(0x01, rq), *p_data(context_id, 0x01, [cmd])]
        if data:
            pdus += p_data(context_id, 0x00, self.split(data))
        pdus.append(pdu(0x05, bytes(4)))
        if target == "sequence":
            pdus = self.shuffle(pdus)
        wire = b"".join(pdus)
        if target == "wire":
            wire = self.mutate(wire)
        return Case(index, target, wire)

    def split(self, data: bytes) -> list[bytes]:
        count = self.random.randint(1, 3)
        cuts = sorted(self.random.randint(0, len(data)) for _ in range(count - 1))
        edges = [0, *cuts, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(edges)]

    def shuffle(self, pdus: list[bytes]) -> list[bytes]:
        pdus = list(pdus)
        index = self.random.randrange(len(pdus))
        action = self.random.choice(("drop", "repeat", "swap", "abort"))
        if action == "drop":
            del pdus[index]
        elif action == "repeat":
            pdus.insert(index, pdus[index])
        elif action == "swap":
            other = self.random.randrange(len(pdus))
            pdus[index], pdus[other] = pdus[other], pdus[index]
        else:
            pdus.insert(index, pdu(PDU_ABORT, bytes(4)))
        return pdus

    def mutate(self, data: bytes) -> bytes:
        buffer = bytearray(data)
        for _ in range(self.random.choice((1, 1, 1, 2, 3))):
            self.random.choice(MUTATORS)(self.random, buffer)
        return bytes(buffer)


def _flip(rng: random.Random, buffer: bytearray) -> None:
    if buffer:
        buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)


def _byte(rng: random.Random, buffer: bytearray) -> None:
    if buffer:
        buffer[rng.randrange(len(buffer))] = rng.choice(INTERESTING)


def _word(rng: random.Random, buffer: bytearray) -> None:
    size = rng.choice((2, 4))
    if len(buffer) < size:
        return
    value = rng.choice(INTERESTING_WORDS) & ((1 << (8 * size)) - 1)
    order = rng.choice(("little", "big"))
    at = rng.randrange(len(buffer) - size + 1)
    buffer[at : at + size] = value.to_bytes(size, order)  # type: ignore[arg-type]


def _truncate(rng: random.Random, buffer: bytearray) -> None:
    del buffer[rng.randint(0, len(buffer)) :]


def _insert(rng: random.Random, buffer: bytearray) -> None:
    at = rng.randint(0, len(buffer))
    buffer[at:at] = rng.randbytes(rng.randint(1, 16))


def _delete(rng: random.Random, buffer: bytearray) -> None:
    if buffer:
        at = rng.randrange(len(buffer))
        del buffer[at : at + rng.randint(1, 16)]


def _repeat(rng: random.Random, buffer: bytearray) -> None:
    if buffer:
        at = rng.randrange(len(buffer))
        buffer[at:at] = buffer[at : at + rng.randint(1, 64)]


MUTATORS: tuple[Callable[[random.Random, bytearray], None], ...] = (
    _flip,
    _byte,
    _word,
    _word,
    _truncate,
    _insert,
    _delete,
    _repeat,
)


# -- running cases ----------------------------------------------------------------------------


def exchange(port: int, wire: bytes, hang_s: float) -> tuple[str, list[int]] | None:
    """Send ``wire``, half-close, read until the node closes; the outcome and the DIMSE
    statuses received, or None if the node did not close within ``hang_s``."""
    with socket.create_connection(("127.0.0.1", port), timeout=hang_s) as connection:
        with contextlib.suppress(OSError):  # the node may close before reading everything
            connection.sendall(wire)
            connection.shutdown(socket.SHUT_WR)
        received = bytearray()
        deadline = time.monotonic() + hang_s
        try:
            while time.monotonic() < deadline:
                chunk = connection.recv(65536)
                if not chunk:
                    return classify(bytes(received))
                received += chunk
        except TimeoutError:
            return None
        except OSError:  # reset by the node: it closed
            return classify(bytes(received))
    return None


def classify(received: bytes) -> tuple[str, list[int]]:
    types, statuses = [], []
    for pdu_type, body in pdus_in(received):
        types.append(pdu_type)
        if pdu_type == PDU_DATA:
            statuses += command_statuses(body)
    for pdu_type, name in (
        (PDU_ABORT, "abort"),
        (PDU_REJECT, "rejected"),
        (PDU_DATA, "response"),
        (PDU_RELEASE_RP, "released"),
        (PDU_ACCEPT, "accepted, then closed"),
    ):
        if pdu_type in types:
            return name, statuses
    return "closed", statuses


def pdus_in(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 6 <= len(data):
        pdu_type, _, length = struct.unpack_from(">BBI", data, offset)
        yield pdu_type, data[offset + 6 : offset + 6 + length]
        offset += 6 + length


def command_statuses(body: bytes) -> list[int]:
    """The Status (0000,0900) of the command set in a P-DATA-TF PDU from the node."""
    found = []
    marker = struct.pack("<HHI", 0x0000, 0x0900, 2)
    at = body.find(marker)
    if at >= 0 and at + 10 <= len(body):
        found.append(struct.unpack_from("<H", body, at + 8)[0])
    return found


@contextlib.contextmanager
def captured_exceptions(server: Any, into: list[str], case: list[int]) -> Iterator[None]:
    """Record (with the current case index) every exception that escapes an association
    thread: socketserver's ``handle_error`` and ``threading.excepthook``."""
    import traceback

    def handle_error(request: Any, client_address: Any) -> None:
        into.append(f"case {case[0]}: {traceback.format_exc()}")

    def excepthook(arguments: threading.ExceptHookArgs) -> None:
        text = "".join(traceback.format_exception(arguments.exc_value))
        into.append(f"case {case[0]} (thread {arguments.thread}): {text}")

    previous = threading.excepthook
    server.handle_error = handle_error
    threading.excepthook = excepthook
    try:
        yield
    finally:
        threading.excepthook = previous
        del server.handle_error


def run(
    port: int, server: Any, generator: Generator, cases: int, hang_s: float = 10.0, first: int = 0
) -> Outcomes:
    """Run the next ``cases`` cases of ``generator`` (numbered from ``first``) against the
    node listening on ``port``, whose socketserver is ``server``."""
    outcomes = Outcomes()
    current = [0]
    with captured_exceptions(server, outcomes.exceptions, current):
        for index in range(first, first + cases):
            case = generator.case(index)
            current[0] = index
            outcomes.targets[case.target] += 1
            result = exchange(port, case.data, hang_s)
            if result is None:
                outcomes.counts["hang"] += 1
                outcomes.hangs.append(index)
                continue
            name, statuses = result
            outcomes.counts[name] += 1
            for status in statuses:
                outcomes.statuses[f"0x{status:04X}"] += 1
        time.sleep(0.2)  # let the last association threads finish
    return outcomes


def resident_bytes() -> int:
    """This process's resident memory now (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
