"""De-identification speed: dicomflow against pydicom's ``deid`` called directly.

For small instances (a 512 x 512 CT, ~0.5 MB, with identifying attributes, a nested
sequence and a private block) and large ones (the same header, 128 frames, ~64 MB), in
the same run and interleaved (best of ``--rounds``):

- ``Deidentifier.deidentify(dataset)`` against ``deid``'s ``DicomParser`` on the same
  recipe (``_recipe(profile)``) with equivalent functions (HMAC UIDs and dummies, dates
  shifted, private attributes removed by ``deid``);
- ``Deidentifier.deidentify_bytes`` (read, de-identify, write) against ``deid`` with the
  same read and write around it;
- ``dicognito`` for reference, when it is importable (it is not a dependency);
- ``dicomflow deid IN OUT`` end to end on ``--files`` files against a loop reading,
  parsing with ``deid`` and writing the same files in this process.

Run: ``.venv/bin/python bench/deid.py [--small 300] [--large 8] [--files 300] [--jobs N]``.
"""

import argparse
import copy
import hashlib
import hmac
import io
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

from dicomflow.dicom.deid import Deidentifier, DeidProfile, Pseudonymizer
from dicomflow.dicom.deid.deidentifier import _recipe
from dicomflow.dicom.factory import make_ct_series

OPTIONS = ["retain_longitudinal_modified_dates", "clean_descriptors"]
LARGE_FRAMES = 128
DICOMFLOW = str(Path(sys.executable).with_name("dicomflow"))


def small_instance() -> Dataset:
    """A 512 x 512 CT with the attributes a de-identification has work to do on."""
    ds = make_ct_series(1, rows=512, columns=512, seed=7)[0]
    ds.PatientName, ds.PatientID = "Doe^Jane^Q", "MRN-0042"
    ds.IssuerOfPatientID, ds.OtherPatientIDs = "HOSPITAL", ["OLD-1", "OLD-2"]
    ds.PatientBirthDate, ds.PatientAge, ds.PatientSex = "19610304", "063Y", "F"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC123", "Who^Doctor"
    ds.InstitutionName, ds.StationName = "General Hospital", "CT-ROOM-2"
    ds.DeviceSerialNumber, ds.ProtocolName = "SN-99", "Chest Jane Doe"
    ds.StudyDescription, ds.SeriesDescription = "CT chest for Jane Doe", "Axial 1mm"
    ds.ImageComments = "Patient Doe, MRN-0042, born 1961-03-04"
    ds.AcquisitionDate, ds.AcquisitionDateTime = "20240101", "20240101120000"
    ds.ReferencedImageSequence = Sequence([_reference(ds, n) for n in range(3)])
    block = ds.private_block(0x0029, "BENCH PRIVATE", create=True)
    block.add_new(0x10, "LO", "private name Jane Doe")
    block.add_new(0x11, "OB", b"\x01" * 256)
    return ds


def _reference(ds: Dataset, number: int) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = f"2.25.{number + 1}{ds.InstanceNumber}"
    return item


def large_instance() -> Dataset:
    """The small instance's header over ``LARGE_FRAMES`` frames (~64 MB of pixels)."""
    ds = small_instance()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4096, (LARGE_FRAMES, 512, 512), dtype=np.uint16)
    ds.NumberOfFrames, ds.PixelData = LARGE_FRAMES, frames.tobytes()
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class DeidFunctions:
    """What a ``deid`` user writes for the same recipe: keyed UIDs and dummies, shifted dates."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _digest(self, purpose: bytes, value: str) -> bytes:
        return hmac.new(self.key, purpose + b"\0" + value.encode(), hashlib.sha256).digest()

    def _uid(self, value: Any) -> Any:
        text = str(value).strip("\0 ")
        return f"2.25.{int.from_bytes(self._digest(b'uid', text)[:16], 'big')}" if text else value

    def uid(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        return _each(field.element, self._uid)

    def dummy(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        element: DataElement = field.element
        if element.VR == "UI":
            return _each(element, self._uid)
        if element.VR in ("DA", "DT", "TM"):
            return {"DA": "19000101", "DT": "19000101000000", "TM": "000000"}[element.VR]
        if element.VR in ("IS", "DS"):
            return "0"
        if element.VR in ("SQ", "AT") or not isinstance(element.value, str):
            return element.value
        return self._digest(b"token", str(element.value)).hex()[:16].upper()

    def patient_id(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        text = str(field.element.value or "").strip()
        return self._digest(b"patient", text).hex()[:16].upper()

    def clean(self, item: Any, value: Any, field: Any, dicom: Any) -> Any:
        element: DataElement = field.element
        if element.VR in ("DA", "DT") and isinstance(element.value, str) and element.value:
            return Pseudonymizer.shift_date(element.value, -400) or ""
        if element.VR == "UI":
            return _each(element, self._uid)
        return element.value


def _each(element: DataElement, function: Callable[[Any], Any]) -> Any:
    value = element.value
    if element.VR == "SQ" or value in (None, ""):
        return value
    if isinstance(value, MultiValue | list):
        return [function(item) for item in value]
    return function(value)


def deid_direct(ds: Dataset, recipe: Any, functions: DeidFunctions) -> None:
    from deid.dicom.fields import _get_fields_inner
    from deid.dicom.parser import DicomParser

    parser = DicomParser(ds, recipe=recipe)
    parser.define("dicomflow_dummy", functions.dummy)
    parser.define("dicomflow_uid", functions.uid)
    parser.define("dicomflow_clean", functions.clean)
    parser.define("dicomflow_patient_id", functions.patient_id)
    parser.parse(remove_private=True)
    _get_fields_inner.cache_clear()  # deid caches every dataset it parsed otherwise


def deid_bytes(data: bytes, recipe: Any, functions: DeidFunctions) -> bytes:
    ds = dcmread(io.BytesIO(data))
    deid_direct(ds, recipe, functions)
    return part10(ds)


def dicognito_anonymizer() -> Callable[[Dataset], None] | None:
    try:
        from dicognito.anonymizer import Anonymizer  # type: ignore[import-not-found]
    except ImportError:
        return None
    anonymizer = Anonymizer()
    return lambda ds: anonymizer.anonymize(ds)


def rates(data: bytes, count: int, works: dict[str, Callable[[bytes], float]]) -> dict[str, float]:
    """Instances/s of each work, run in turn on every instance (the order rotating), so
    that a busy machine or a garbage collection slows them alike; one warm-up each."""
    spent = dict.fromkeys(works, 0.0)
    names = list(works)
    for number in range(count + 1):
        turn = number % len(names)
        for name in names[turn:] + names[:turn]:
            seconds = works[name](data)
            spent[name] += seconds if number else 0.0
    return {name: count / seconds for name, seconds in spent.items()}


def in_place(work: Callable[[Dataset], object]) -> Callable[[bytes], float]:
    """Seconds ``work`` takes on a freshly read dataset (the reading is not timed)."""

    def timed(data: bytes) -> float:
        ds = dcmread(io.BytesIO(data))
        ds.PatientName  # noqa: B018 - the header is read before the clock starts
        start = time.perf_counter()
        work(ds)
        return time.perf_counter() - start

    return timed


def with_bytes(work: Callable[[bytes], object]) -> Callable[[bytes], float]:
    """Seconds ``work`` takes from Part-10 bytes to Part-10 bytes."""

    def timed(data: bytes) -> float:
        start = time.perf_counter()
        work(data)
        return time.perf_counter() - start

    return timed


def compare(label: str, data: bytes, count: int, key: bytes) -> None:
    profile = DeidProfile.from_names("basic", OPTIONS)
    deidentifier = Deidentifier(profile, Pseudonymizer(key))
    recipe, functions = _recipe(profile), DeidFunctions(key)
    pairs = [
        {
            "dicomflow Deidentifier.deidentify": in_place(deidentifier.deidentify),
            "deid DicomParser (same recipe)": in_place(
                lambda ds: deid_direct(ds, recipe, functions)
            ),
        },
        {
            "dicomflow deidentify_bytes (read+write)": with_bytes(deidentifier.deidentify_bytes),
            "deid with read+write": with_bytes(lambda raw: deid_bytes(raw, recipe, functions)),
        },
    ]
    anonymize = dicognito_anonymizer()
    if anonymize is not None:
        pairs.append({"dicognito Anonymizer (reference)": in_place(anonymize)})
    # Each comparison is its own interleaved run: the garbage one pair leaves is not
    # collected while the other pair is timed.
    measured = {name: rate for works in pairs for name, rate in rates(data, count, works).items()}
    print(f"\n{label}: {len(data) / 1e6:.2f} MB, {count} instance(s) each, interleaved in pairs")
    for name, rate in measured.items():
        print(f"  {name:42s} {rate:9.1f} instances/s")
    names = list(measured)
    print(f"  overhead in place: {measured[names[1]] / measured[names[0]]:.2f}x (target <= 1.2x)")
    print(f"  overhead read+write: {measured[names[3]] / measured[names[2]]:.2f}x (target <= 1.2x)")
    if anonymize is None:
        print("  dicognito: not installed (a reference only, not a dependency)")


def end_to_end(files: int, key: bytes, jobs: int) -> None:
    """``dicomflow deid`` on ``files`` files (a new process: start-up included, and
    measured alone on one file) against a read/deid/write loop in this process."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        key_file = root / "key"
        key_file.write_text(key.hex())
        key_file.chmod(0o600)
        source = write_files(root / "in", files)
        one = write_files(root / "one", 1)
        direct = _deid_loop(source, root / "deid", key)
        print(f"\nend to end, {files} small files:")
        print(f"  deid loop in this process           {files / direct:9.1f} instances/s")
        for count in sorted({1, jobs}):
            started = _cli(one, root / f"cli-one-{count}", key_file, count)
            spent = _cli(source, root / f"cli-{count}", key_file, count)
            steady = (files - 1) / max(spent - started, 1e-9)
            print(
                f"  dicomflow deid --jobs {count}: {files / spent:9.1f} instances/s ({spent:.2f} s;"
                f" start-up {started:.2f} s; after it {steady:.1f} instances/s,"
                f" {direct / files * steady:.2f}x the loop's rate)"
            )


def write_files(folder: Path, count: int) -> Path:
    folder.mkdir()
    template = small_instance()
    for number in range(count):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"2.25.{number + 1}")
        ds.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
    return folder


def _cli(source: Path, out: Path, key_file: Path, jobs: int) -> float:
    command = [DICOMFLOW, "deid", str(source), str(out), "--key-file", str(key_file)]
    command += ["--options", ",".join(OPTIONS), "--jobs", str(jobs)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def _deid_loop(source: Path, out: Path, key: bytes) -> float:
    recipe = _recipe(DeidProfile.from_names("basic", OPTIONS))
    functions = DeidFunctions(key)
    out.mkdir()
    start = time.perf_counter()
    for path in sorted(source.iterdir()):
        ds = dcmread(path)
        deid_direct(ds, recipe, functions)
        ds.save_as(out / path.name, enforce_file_format=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=300, help="small instances")
    parser.add_argument("--large", type=int, default=8, help="large instances")
    parser.add_argument("--files", type=int, default=300, help="files for the CLI run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="CLI --jobs")
    arguments = parser.parse_args()
    key = secrets.token_bytes(32)
    print(f"{platform.node()}: {platform.processor() or platform.machine()}, ", end="")
    print(f"{os.cpu_count()} CPU(s), Python {platform.python_version()}")
    compare("small", part10(small_instance()), arguments.small, key)
    compare("large", part10(large_instance()), arguments.large, key)
    if arguments.files:
        end_to_end(arguments.files, key, arguments.jobs)


if __name__ == "__main__":
    main()
