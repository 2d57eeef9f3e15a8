"""Synthetic archives for bench/catalog.py: instances, a dicomflow archive, an Orthanc.

Instance ``i`` is the only instance of series ``i``; two series make a study and three
studies a patient, so N series are N/2 studies of N/6 patients. Every attribute comes
from a generator seeded by the index of its patient or study, so the first 1,000 files of
the 100k set are the 1k set and each size has the same mix: 3 % of patients are named
``Smith`` or ``Smirnova`` (``PatientName=smi*``), study dates spread evenly over 2000-2024
(a one-year range selects 4 %). Files are written in folders of 1,000 (``shard-NNNN``)
and reused by every size; each step leaves a ``.complete`` marker and is skipped when
the marker is there.
"""

import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, MRImageStorage

SHARD = 1000
CATALOG = "catalog.sqlite"  # where a local datastore's catalog is by default
REINDEXED = ".reindexed"
SERIES_PER_STUDY = 2
STUDIES_PER_PATIENT = 3
ROOT = "1.2.826.0.1.3680043.8.498.77"
SURNAMES = {
    "Smith": 2.5, "Smirnova": 0.5, "Johnson": 4, "Williams": 4, "Brown": 4, "Jones": 4,
    "Garcia": 4, "Miller": 4, "Davis": 4, "Martin": 4, "Bernard": 4, "Dubois": 4,
    "Thomas": 4, "Robert": 4, "Richard": 4, "Petit": 4, "Durand": 4, "Leroy": 4,
    "Moreau": 4, "Simon": 4, "Laurent": 4, "Lefebvre": 4, "Michel": 4, "Muller": 4,
    "Schmidt": 4, "Schneider": 4, "Fischer": 4, "Weber": 3,
}  # fmt: skip
GIVEN = ["John", "Mary", "Anna", "Peter", "Marie", "Luc", "Sophie", "Hans", "Eva", "Paul"]
DESCRIPTIONS = ["MR BRAIN W/O", "MR KNEE LEFT", "MR SPINE LUMBAR", "MR ABDOMEN", "MR HEART"]
SERIES_DESCRIPTIONS = ["T1 SAG", "T2 AX", "FLAIR AX", "DWI", "T1 POST"]
FIRST_DAY, DAYS = date(2000, 1, 1), 25 * 365


@dataclass(frozen=True)
class Patient:
    patient_id: str
    name: str
    birth_date: str
    sex: str


def patient(number: int) -> Patient:
    rng = random.Random(f"patient-{number}")
    surname = rng.choices(list(SURNAMES), weights=list(SURNAMES.values()))[0]
    birth = FIRST_DAY - timedelta(days=rng.randrange(365 * 10, 365 * 90))
    return Patient(
        f"P{number:07d}", f"{surname}^{rng.choice(GIVEN)}", f"{birth:%Y%m%d}", rng.choice("MF")
    )


def uid(kind: int, number: int) -> str:
    return f"{ROOT}.{kind}.{number + 1}"


def template() -> Dataset:
    """A 64x64 MR instance whose identifying attributes :func:`fill` sets."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = MRImageStorage
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.Modality, ds.Manufacturer, ds.InstitutionName = "MR", "Bench", "Bench Hospital"
    ds.ReferringPhysicianName = "Doe^Jane"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 4096, (64, 64), np.uint16).tobytes()
    return ds


def fill(ds: Dataset, index: int) -> None:
    """Make ``ds`` instance ``index``: its series, study and patient."""
    study = index // SERIES_PER_STUDY
    person = patient(study // STUDIES_PER_PATIENT)
    rng = random.Random(f"study-{study}")
    day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
    ds.PatientID, ds.PatientName = person.patient_id, person.name
    ds.PatientBirthDate, ds.PatientSex = person.birth_date, person.sex
    ds.StudyInstanceUID, ds.StudyID = uid(1, study), f"{study % 100000}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = f"{day:%Y%m%d}"
    ds.StudyTime = ds.SeriesTime = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00"
    ds.AccessionNumber = f"A{study:09d}"
    ds.StudyDescription = rng.choice(DESCRIPTIONS)
    ds.SeriesInstanceUID, ds.SeriesNumber = uid(2, index), index % SERIES_PER_STUDY + 1
    ds.SeriesDescription = SERIES_DESCRIPTIONS[index % len(SERIES_DESCRIPTIONS)]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(uid(3, index))
    ds.InstanceNumber = 1


def part10(ds: Dataset) -> bytes:
    """The Part-10 bytes ``dcmwrite(..., enforce_file_format=True)`` writes, without its
    copy and checks of the file meta (a third of the time)."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, ds.file_meta, enforce_standard=True)
    write_dataset(buffer, ds)
    return buffer.getvalue()


def shard_folder(instances: Path, shard: int) -> Path:
    return instances / f"shard-{shard:04d}"


def write_shard(instances: Path, shard: int) -> None:
    """Write the 1,000 files of one shard (in a worker process), then its marker."""
    folder = shard_folder(instances, shard)
    if (folder / ".complete").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    ds = template()
    for index in range(shard * SHARD, (shard + 1) * SHARD):
        fill(ds, index)
        (folder / f"{index:07d}.dcm").write_bytes(part10(ds))
    (folder / ".complete").touch()


def shards(size: int) -> range:
    return range(size // SHARD)


def make_instances(instances: Path, size: int) -> float:
    """Write the shards ``size`` needs that are missing; the seconds it took (0: cached)."""
    missing = [s for s in shards(size) if not (shard_folder(instances, s) / ".complete").exists()]
    if not missing:
        return 0.0
    started = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(write_shard, [instances] * len(missing), missing))
    return time.perf_counter() - started


def ingest_archive(instances: Path, size: int, datastore: Path) -> float:
    """``dicomflow cod ingest`` of the first ``size`` files (its process pool); seconds (0:
    cached). Ingest is incremental (duplicates are skipped), so a partial run resumes."""
    marker = datastore / ".complete"
    if marker.exists():
        return 0.0
    datastore.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folders = [str(shard_folder(instances, s)) for s in shards(size)]
    dicomflow(["cod", "ingest", *folders, "--datastore", str(datastore)])
    seconds = time.perf_counter() - started
    if (datastore / CATALOG).exists():  # the ingest recorded every series: no reindex
        (datastore / REINDEXED).touch()
    marker.touch()
    return seconds


def dicomflow(arguments: list[str]) -> None:
    """Run the ``dicomflow`` command of this interpreter's environment, quietly."""
    command = [str(Path(sys.executable).with_name("dicomflow")), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{result.stdout}{result.stderr}")


class Orthanc:
    """Debian's Orthanc on free loopback ports with its storage and index in ``folder``
    (kept between runs), C-FIND open to any calling AE title."""

    def __init__(self, folder: Path, ae_title: str = "ORTHANC") -> None:
        self.folder, self.ae_title = folder, ae_title
        self.dicom_port, self.http_port = free_port(), free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "bench-catalog",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "StorageCompression": False,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = (folder / "orthanc.log").open("a")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            ["Orthanc", str(folder / "orthanc.json")], stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_for_port(self.http_port, 120)
        wait_for_port(self.dicom_port, 120)

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """One request on a new connection; the decoded JSON answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=600)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise SystemExit(f"Orthanc {method} {path}: HTTP {response.status} {payload[:200]!r}")
        return json.loads(payload)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)
        self.log.close()


@contextmanager
def running_orthanc(folder: Path) -> Iterator[Orthanc]:
    orthanc = Orthanc(folder)
    try:
        yield orthanc
    finally:
        orthanc.stop()


def load_orthanc(orthanc: Orthanc, instances: Path, size: int, threads: int = 4) -> float:
    """POST the first ``size`` files to /instances from ``threads`` kept-alive connections;
    seconds (0: cached). Reposting an instance Orthanc has is harmless, so a partial run
    resumes from the start."""
    marker = orthanc.folder / ".complete"
    if marker.exists():
        return 0.0
    files = [f for s in shards(size) for f in sorted(shard_folder(instances, s).glob("*.dcm"))]
    local = threading.local()

    def post(path: Path) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", orthanc.http_port)
        local.connection.request("POST", "/instances", body=path.read_bytes())
        response = local.connection.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"Orthanc refused {path}: HTTP {response.status}")

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(post, files))
    seconds = time.perf_counter() - started
    count = orthanc.request("GET", "/statistics")["CountInstances"]
    if count != size:
        raise SystemExit(f"Orthanc holds {count} instances, expected {size}")
    marker.touch()
    return seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.01)
    raise SystemExit(f"nothing listens on port {port} after {timeout_s} s")


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
