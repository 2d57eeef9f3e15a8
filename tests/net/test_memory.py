"""What a running node holds in memory while it receives: peak RSS of a real node process.

The node runs as users run it (``dicomflow serve``, lean receiver) with tight limits;
instances come from dicomflow's own requestor over TCP. The node's peak resident
memory (``VmHWM``) is compared with its memory once it answered a C-ECHO.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from dicomflow.address import Address
from dicomflow.dicom.filemeta import encode_file_meta
from dicomflow.net import requestor
from support import free_port, wait_for_port, write_deflate_bomb

MIB = 1 << 20
NODE_DIR = Path(__file__).parents[1] / "node"
DICOMFLOW = str(Path(sys.executable).parent / "dicomflow")


class NodeProcess:
    """``dicomflow serve`` of a pipeline that holds every instance, in its own process."""

    def __init__(self, data: Path, **settings: int | str) -> None:
        self.data = data
        self.port = free_port()
        environment = dict(os.environ)
        environment.update({f"DICOMFLOW_{k.upper()}": str(v) for k, v in settings.items()})
        command = [DICOMFLOW, "serve", f"{NODE_DIR / 'sample_pipelines.py'}:HoldingPipeline"]
        command += ["--port", str(self.port), "--data-dir", str(data), "--no-web"]
        data.mkdir(parents=True, exist_ok=True)
        self.log = (data.parent / "node.log").open("wb")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log, env=environment)
        wait_for_port(self.port, timeout_s=60)
        requestor.echo(self.address)

    @property
    def address(self) -> Address:
        return Address("127.0.0.1", self.port, "DICOMFLOW")

    def memory(self, field: str) -> int:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the node process, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    def stored(self) -> list[Path]:
        return sorted((self.data / "spool" / "incoming").rglob("*.dcm"))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def node_process(tmp_path: Path) -> Iterator[type[NodeProcess]]:
    started: list[NodeProcess] = []

    def start(**settings: int | str) -> NodeProcess:
        node = NodeProcess(tmp_path / "data", **settings)
        started.append(node)
        return node

    yield start  # type: ignore[misc]
    for node in started:
        node.stop()


def write_large_ct(path: Path, pixel_bytes: int) -> str:
    """A CT instance whose (zero) pixel data is ``pixel_bytes`` long, written without
    holding it in memory; return its SOP Instance UID."""
    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "CT"
    dataset.PatientID = "LARGE"
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Rows = dataset.Columns = 1024
    dataset.NumberOfFrames = pixel_bytes // (2 * MIB)
    dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.BitsStored = 1, 16, 16
    dataset.HighBit, dataset.PixelRepresentation = 15, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, dataset)
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + pixel_bytes.to_bytes(4, "little")
    meta = encode_file_meta(CTImageStorage, dataset.SOPInstanceUID, ExplicitVRLittleEndian)
    with path.open("wb") as file:
        file.write(meta + buffer.getvalue() + pixel_header)
        file.truncate(file.tell() + pixel_bytes)  # zeros, sparse on disk
    return str(dataset.SOPInstanceUID)


@pytest.mark.parametrize("receiver", ["lean", "pynetdicom"])
def test_a_deflate_bomb_is_refused_without_inflating_it(
    node_process: type[NodeProcess], tmp_path: Path, receiver: str
) -> None:
    """~1 MB on the wire inflating to 1 GiB: refused with 0xA700 past maximum_instance_bytes
    (64 MiB), the node's peak memory a small multiple of that limit, nothing stored; by
    either receiver."""
    limit = 64 * MIB
    node = node_process(
        maximum_instance_bytes=limit, maximum_held_bytes=256 * MIB, receiver=receiver
    )
    bomb = tmp_path / "bomb.dcm"
    write_deflate_bomb(bomb, 1 << 30)
    assert bomb.stat().st_size < 2 * MIB
    before = node.memory("VmRSS")
    report = requestor.send(node.address, [bomb])
    grown = node.memory("VmHWM") - before
    print(
        f"deflate bomb ({receiver}, 1 GiB inflated, {limit // MIB} MiB limit):"
        f" peak RSS +{grown / MIB:.0f} MiB"
    )
    assert list(report.failed.values()) == ["status 0xA700"]
    assert grown < 3 * limit
    assert node.stored() == []
    requestor.echo(node.address)  # still serving


def test_a_200_mib_instance_stays_within_maximum_held_bytes(
    node_process: type[NodeProcess], tmp_path: Path
) -> None:
    """Received whole under a 256 MiB maximum_held_bytes: the node's real peak (instance
    buffer, PDUs, decoded values, the file written) stays within the limit."""
    limit = 256 * MIB
    node = node_process(maximum_held_bytes=limit)
    large = tmp_path / "large.dcm"
    uid = write_large_ct(large, 200 * MIB)
    before = node.memory("VmRSS")
    report = requestor.send(node.address, [large])
    grown = node.memory("VmHWM") - before
    print(
        f"200 MiB instance ({limit // MIB} MiB maximum_held_bytes): peak RSS +{grown / MIB:.0f} MiB"
    )
    assert report.ok, report.failed
    assert grown < limit
    [stored] = node.stored()
    assert stored.name == f"{uid}.dcm" and stored.stat().st_size == large.stat().st_size


def test_a_200_mib_instance_over_maximum_held_bytes_is_refused_within_it(
    node_process: type[NodeProcess], tmp_path: Path
) -> None:
    """Under a 128 MiB maximum_held_bytes the same instance aborts its association before
    the node holds more than the limit; nothing is stored and the node keeps serving."""
    limit = 128 * MIB
    node = node_process(maximum_held_bytes=limit)
    large = tmp_path / "large.dcm"
    write_large_ct(large, 200 * MIB)
    before = node.memory("VmRSS")
    report = requestor.send(node.address, [large])
    grown = node.memory("VmHWM") - before
    print(
        f"200 MiB instance ({limit // MIB} MiB maximum_held_bytes): peak RSS +{grown / MIB:.0f} MiB"
    )
    assert not report.sent and "association lost" in next(iter(report.failed.values()))
    assert grown < limit + 16 * MIB  # allocator rounding: at most one PDU's worth
    assert node.stored() == []
    requestor.echo(node.address)
