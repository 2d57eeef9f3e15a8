"""Helpers shared by the tests: free ports, dcmtk, Orthanc and Redis peers, waiting."""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    RLELossless,
)

from dicomflow.engine.node import Node, wait_until
from dicomflow.net.pdu import APPLICATION_CONTEXT, VERIFICATION, item
from dicomflow.tls import SelfSigned

DCMTK_TOOLS = ("storescu", "storescp", "echoscu")


def free_port() -> int:
    """A TCP port that is free on loopback right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


class StoreSCPPeer:
    """A dcmtk ``storescp`` storing what it receives in ``folder``; with ``options``
    (default ``+xa``: every transfer syntax it knows). An ``-xcr`` command among the
    options runs as well as the one that marks each file whole. With ``tls`` (its
    certificate and key) it speaks DICOM TLS; with ``client_ca`` too it requires a client
    certificate that file trusts."""

    def __init__(
        self,
        folder: Path,
        ae_title: str = "PACS",
        options: tuple[str, ...] = ("+xa",),
        tls: SelfSigned | None = None,
        client_ca: Path | None = None,
    ) -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.port = free_port()
        self.tls = tls is not None
        folder.mkdir(parents=True, exist_ok=True)
        on_reception = 'touch "#p/.#f.received"'  # run once the file is whole
        kept = list(options)
        if tls is not None:
            kept += ["+tls", str(tls.private_key), str(tls.certificate)]
            kept += ["+cf", str(client_ca), "-rc"] if client_ca is not None else ["-ic"]
        if "-xcr" in kept:
            at = kept.index("-xcr")
            on_reception = f"{kept[at + 1]}; {on_reception}"
            del kept[at : at + 2]
        self.command = [
            "storescp",
            *("-aet", ae_title, "-od", str(folder), *kept),
            *("-xcr", on_reception),
            str(self.port),
        ]
        self.start()

    def start(self) -> None:
        """Run storescp (again, after :meth:`stop`) on the same port and folder."""
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def files(self) -> list[Path]:
        """The files storescp has begun to write, each once it is whole: storescp marks
        a file (its ``-xcr`` hook, run just after the file is written) and this waits
        for the mark."""
        found = sorted(
            p for p in self.folder.iterdir() if p.is_file() and not p.name.startswith(".")
        )
        for path in found:
            wait_for(
                (path.parent / f".{path.name}.received").exists,
                timeout_s=10,
                what=f"storescp to finish writing {path.name}",
            )
        return found

    def endpoint(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}" + ("?tls" if self.tls else "")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


PROPOSE_FLAG = {
    JPEG2000Lossless: "-xv",
    JPEG2000: "-xw",
    JPEGBaseline8Bit: "-xy",
    JPEGExtended12Bit: "-xx",
    DeflatedExplicitVRLittleEndian: "-xd",
    JPEGLosslessSV1: "-xs",
    RLELossless: "-xr",
}


def storescu(
    port: int,
    files: list[Path],
    *,
    aec: str = "DICOMFLOW",
    aet: str = "STORESCU",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Send ``files`` with dcmtk's ``storescu``: one association per compressed transfer
    syntax (storescu proposes one syntax per run), the uncompressed ones together."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        syntax = dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        groups.setdefault(PROPOSE_FLAG.get(syntax, ""), []).append(path)
    result = None
    for flag, paths in groups.items():
        options = [flag] if flag else []
        command = ["storescu", *options, "-aet", aet, "-aec", aec, "127.0.0.1", str(port)]
        command += [str(path) for path in paths]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"storescu failed ({result.returncode}): {result.stderr[-2000:]}")
    assert result is not None
    return result


def dcmtk_tls_options(certificate: Path, private_key: Path, *trusted: Path) -> list[str]:
    """dcmtk's options for DICOM TLS with this identity, trusting ``trusted`` (the peer
    must present a certificate: dcmtk's default ``--require-peer-cert``)."""
    options = ["+tls", str(private_key), str(certificate)]
    for path in trusted:
        options += ["+cf", str(path)]
    return options


NodeFactory = Callable[..., Node]
PeerStarter = Callable[[int], Path]  # starts dcmtk storescp on a port; returns its folder


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition"
) -> None:
    if not wait_until(predicate, timeout_s):
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


class RedisServer:
    """A throw-away ``redis-server`` on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server is missing; `make test` installs it")
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


POSTGRES_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


class PostgresServer:
    """A throw-away PostgreSQL (``initdb`` + ``postgres``) on a free loopback port, trusting
    local connections, its cluster in a fresh temporary folder (owned by the ``postgres``
    account when the tests run as root: PostgreSQL refuses to run as root). ``database()``
    makes an empty database and returns its URL."""

    def __init__(self) -> None:
        binaries = [Path(p).parent for p in (shutil.which("initdb"),) if p] or POSTGRES_BIN
        if not binaries or not (binaries[-1] / "postgres").exists():
            raise AssertionError("PostgreSQL is missing; `make bootstrap` installs it")
        self.bin = binaries[-1]
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="dicomflow-pg-"))
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.folder / "data"), "-U", "postgres", "-A", "trust")
        settings = ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        command = [
            str(self.bin / "postgres"),
            "-D",
            str(self.folder / "data"),
            "-p",
            str(self.port),
        ]
        command += ["-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", *settings]
        self.process = subprocess.Popen(
            command, user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)
        self._count = 0

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bin / tool), *args], user=self.user, check=True, capture_output=True
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        self._count += 1
        name = f"catalog{self._count}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open connections are ended, not waited for."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class OrthancTLS:
    """Orthanc's DICOM TLS: its identity (``DicomTlsCertificate``/``DicomTlsPrivateKey``,
    used both listening and sending), the certificates it trusts
    (``DicomTlsTrustedCertificates``, written as one PEM bundle) and whether a peer must
    present one (``DicomTlsRemoteCertificateRequired``: mutual TLS). With TLS on,
    Orthanc's DICOM port speaks only TLS."""

    certificate: Path
    private_key: Path
    trusted: tuple[Path, ...]
    remote_certificate_required: bool = True


class OrthancPeer:
    """A throw-away Orthanc (Debian's ``orthanc``) as the PACS: DICOM and REST on free
    loopback ports, storage in ``folder``; ``modalities`` maps a name to ``AE@host:port``,
    ``AE@host:port?tls`` for a modality Orthanc reaches over DICOM TLS (``UseDicomTls``).
    With ``tls`` its DICOM port speaks TLS (and it sends over TLS with that identity)."""

    def __init__(
        self,
        folder: Path,
        ae_title: str = "ORTHANC",
        modalities: dict[str, str] | None = None,
        tls: OrthancTLS | None = None,
    ) -> None:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise AssertionError("Orthanc is missing; `make test` installs it (package orthanc)")
        self.ae_title = ae_title
        self.dicom_port, self.http_port = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "Name": "dicomflow-test-pacs",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": orthanc_modalities(modalities or {}),
            "Plugins": [],
            "StorageCompression": False,
            "OverwriteInstances": True,
        }
        if tls is not None:
            config.update(orthanc_tls_configuration(tls, folder / "trusted.pem"))
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log_path = folder / "orthanc.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [binary, str(folder / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.http_port, timeout_s=30)
        wait_for_port(self.dicom_port, timeout_s=30)

    def endpoint(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.dicom_port}"

    def rest(self, method: str, path: str, body: bytes | str | None = None) -> Any:
        """Call Orthanc's REST API; JSON answers are decoded, others returned as bytes."""
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
            if response.headers.get_content_type() == "application/json":
                return json.loads(payload)
            return payload

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.log.close()


def orthanc_modalities(modalities: dict[str, str]) -> dict[str, Any]:
    """Orthanc's ``DicomModalities`` for ``{name: "AE@host:port[?tls]"}``: the object
    form, which alone carries ``UseDicomTls``."""
    peers: dict[str, Any] = {}
    for name, endpoint in modalities.items():
        address, _, option = endpoint.partition("?")
        title, _, location = address.partition("@")
        host, _, port = location.rpartition(":")
        peers[name] = {"AET": title, "Host": host, "Port": int(port)}
        if option == "tls":
            peers[name]["UseDicomTls"] = True
    return peers


def orthanc_tls_configuration(tls: OrthancTLS, bundle: Path) -> dict[str, Any]:
    """The ``DicomTls*`` options of Orthanc 1.9+; the trusted certificates are written to
    ``bundle``, one PEM file, as Orthanc wants them."""
    bundle.write_text("".join(path.read_text() for path in tls.trusted))
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(tls.certificate),
        "DicomTlsPrivateKey": str(tls.private_key),
        "DicomTlsTrustedCertificates": str(bundle),
        "DicomTlsRemoteCertificateRequired": tls.remote_certificate_required,
    }


S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def s3_server(bucket: str) -> Iterator[str]:
    """moto's S3-compatible server on 127.0.0.1 (OS-assigned port) with ``bucket``; yields
    its URL. The endpoint is given as users give it, by ``AWS_ENDPOINT_URL`` in the
    environment, which worker processes started meanwhile inherit."""
    import fsspec
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    environment = {**S3_ENVIRONMENT, "AWS_ENDPOINT_URL": url}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    S3FileSystem.clear_instance_cache()
    fsspec.filesystem("s3").mkdir(bucket)
    try:
        yield url
    finally:
        S3FileSystem.clear_instance_cache()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def write_deflate_bomb(path: Path, inflated_bytes: int, patient_id: str = "BOMB") -> str:
    """Write a Deflated Explicit VR Little Endian CT instance whose private OB element of
    ``inflated_bytes`` zeros (even) deflates to about a thousandth; return its SOP Instance
    UID. The zeros are deflated once per MiB-block and the block repeated: after a full
    flush a block refers to nothing before it, so the stream stays valid."""
    from pydicom import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import CTImageStorage, generate_uid

    from dicomflow.dicom.filemeta import encode_file_meta

    dataset = Dataset()
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "CT"
    dataset.add_new(0x00090010, "LO", "DICOMFLOW BOMB")
    dataset.PatientID = patient_id
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()

    def encoded(subset: Dataset) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, subset)
        return buffer.getvalue()

    before = encoded(Dataset({t: e for t, e in dataset.items() if t < 0x00091010}))
    after = encoded(Dataset({t: e for t, e in dataset.items() if t > 0x00091010}))
    bomb_header = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, inflated_bytes)
    block = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(before + bomb_header) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(inflated_bytes, block)
    tail = compressor.compress(bytes(rest) + after) + compressor.flush()
    meta = encode_file_meta(CTImageStorage, dataset.SOPInstanceUID, DeflatedExplicitVRLittleEndian)
    with path.open("wb") as file:
        file.write(meta + head)
        for _ in range(whole):
            file.write(zeros)
        file.write(tail + (b"\x00" if (len(head) + len(zeros) * whole + len(tail)) % 2 else b""))
    return str(dataset.SOPInstanceUID)


@contextlib.contextmanager
def small_filesystem(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``"24m"``) mounted at ``mount_point`` (the tests run as root);
    raises ``OSError`` where mounting is impossible."""
    mount_point.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(mount_point)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"cannot mount a tmpfs at {mount_point}: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill_filesystem(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` with one file; its path."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(descriptor, bytes(size))
    finally:
        os.close(descriptor)
    return filler


def association_request(
    called: bytes = b"DICOMFLOW",
    calling: bytes = b"REQUESTOR",
    contexts: tuple[tuple[str, str], ...] = ((VERIFICATION, "1.2.840.10008.1.2"),),
) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``contexts`` (abstract syntax, transfer syntax) as
    presentation contexts 1, 3, 5...; its AE titles given as raw bytes (a peer may send any)."""
    items = [
        item(
            0x20,
            bytes((2 * index + 1, 0, 0, 0))
            + item(0x30, abstract.encode())
            + item(0x40, syntax.encode()),
        )
        for index, (abstract, syntax) in enumerate(contexts)
    ]
    body = b"".join(
        (
            struct.pack(">HH", 1, 0),
            called[:16].ljust(16, b" "),
            calling[:16].ljust(16, b" "),
            b"\x00" * 32,
            item(0x10, APPLICATION_CONTEXT.encode()),
            *items,
            item(0x50, item(0x51, struct.pack(">I", 16384))),
        )
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def sop_uids(paths: list[Path]) -> set[str]:
    """The SOPInstanceUIDs of the Part-10 files ``paths``."""
    return {str(dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths}
