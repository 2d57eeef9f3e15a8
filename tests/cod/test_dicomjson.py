"""The direct DICOM JSON conversion gives exactly pydicom's ``to_json_dict``."""

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset, config
from pydicom.data import get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicomflow.cod import dicomjson
from dicomflow.dicom.factory import make_ct_series, make_dataset, write_series

THRESHOLD = 1024


def _uri(tag: int) -> str:
    return f"file:///s.tar://instances/1.dcm#{tag:08X}"


def _pydicom_json(read: Callable[[], Dataset], bulk: bool) -> str:
    handler = (lambda element: _uri(int(element.tag))) if bulk else None
    try:
        return json.dumps(read().to_json_dict(THRESHOLD, handler), sort_keys=True)
    except Exception as exc:  # the direct conversion must fail as well
        return f"error: {type(exc).__name__}"


def _direct_json(read: Callable[[], Dataset], bulk: bool) -> str:
    try:
        return json.dumps(
            dicomjson.to_json_dict(read(), THRESHOLD, _uri if bulk else None), sort_keys=True
        )
    except Exception as exc:
        return f"error: {type(exc).__name__}"


def _assert_same(data: bytes, bulk: bool = True) -> None:
    """Same JSON text (so int vs float and str types count) as pydicom, eager or deferred."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _pydicom_json(lambda: pydicom.dcmread(io.BytesIO(data), force=True), bulk)
        for defer_size in (None, THRESHOLD):

            def read(size: int | None = defer_size) -> Dataset:
                return pydicom.dcmread(io.BytesIO(data), force=True, defer_size=size)

            assert _direct_json(read, bulk) == expected, f"defer_size={defer_size}"


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _readable(path: str) -> bool:
    try:
        pydicom.dcmread(path, force=True)
    except Exception:
        return False
    return True


BUNDLED = [path for path in get_testdata_files() if _readable(path)]


@pytest.mark.parametrize("path", BUNDLED, ids=[Path(path).name for path in BUNDLED])
def test_bundled_files(path: str) -> None:
    data = Path(path).read_bytes()
    _assert_same(data)
    _assert_same(data, bulk=False)


def test_bundled_files_are_there() -> None:
    assert len(BUNDLED) > 100


def test_synthetic_series(tmp_path: Path) -> None:
    for file in write_series(make_ct_series(3, rows=32, columns=32), tmp_path):
        _assert_same(file.read_bytes())


def _raw(ds: Dataset, tag: int, vr: str, value: bytes) -> None:
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)  # type: ignore[assignment]


VALUES: list[tuple[str, bytes]] = [
    ("PN", b"Doe^John"),
    ("PN", b"Doe^John=Yamada^Taro=yamada^taro"),
    ("PN", b"A==C"),
    ("PN", b"A=="),
    ("PN", b"=B"),
    ("PN", b"A=B=C=D"),
    ("PN", b"One\\Two\\"),
    ("PN", b"\\"),
    ("PN", b"  "),
    ("PN", b""),
    ("IS", b"12 "),
    ("IS", b" -7\\+3\\0012"),
    ("IS", b"1.0"),
    ("IS", b"1.5"),
    ("IS", b"99999999999999999999"),
    ("IS", b"1\\\\2"),
    ("IS", b"  "),
    ("IS", b"abc"),
    ("DS", b"0.5 "),
    ("DS", b" 1e3\\-.25\\+7.\\1E-2"),
    ("DS", b"nan"),
    ("DS", b"1_0"),
    ("DS", b"1\\ \\2"),
    ("DS", b""),
    ("CS", b"ORIGINAL\\PRIMARY\\AXIAL "),
    ("CS", b"A\\\\B"),
    ("CS", b"\\"),
    ("CS", b" "),
    ("AE", b" STORE SCP \\ X "),
    ("UI", b"1.2.3\x00"),
    ("UI", b"1.2\\3.4"),
    ("LO", b"Hello \\ World\x00"),
    ("LO", b"caf\xe9"),
    ("LO", b"\x1b$B"),
    ("SH", b"  lead"),
    ("LT", b"a\\b  "),
    ("UT", b"long text\x00"),
    ("DA", b"20240102\\20240103"),
    ("TM", b"101010.5 "),
    ("US", b"\x01\x00"),
    ("US", b"\x01\x00\x02\x00"),
    ("SS", b"\xff\xff"),
    ("UL", b""),
    ("FL", b"\x00\x00\xc0\x3f"),
    ("FD", b"\x00\x00\x00\x00\x00\x00\xf8\x3f" * 2),
    ("AT", b"\x10\x00\x10\x00\x28\x00\x30\x00"),
    ("AT", b"\x10\x00"),
    ("OB", b"\x01\x02"),
    ("OB", b""),
    ("OW", b"\x00\x01" * 600),
    ("UN", b"\x00\x01"),
]
TAGS = {
    "PN": 0x00100010,
    "IS": 0x00200013,
    "DS": 0x00280030,
    "CS": 0x00080008,
    "AE": 0x00080054,
    "UI": 0x00080016,
    "LO": 0x00100020,
    "SH": 0x00080050,
    "LT": 0x00204000,
    "UT": 0x00181030,
    "DA": 0x00080020,
    "TM": 0x00080030,
    "US": 0x00280010,
    "SS": 0x00281052,
    "UL": 0x00081161,
    "FL": 0x00189327,
    "FD": 0x00189306,
    "AT": 0x00209165,
    "OB": 0x00420011,
    "OW": 0x00283006,
    "UN": 0x00091010,
}


@pytest.mark.parametrize(("vr", "value"), VALUES, ids=[f"{vr}-{v!r}" for vr, v in VALUES])
def test_values(vr: str, value: bytes) -> None:
    ds = make_dataset()
    _raw(ds, TAGS[vr], vr, value)
    _assert_same(_part10(ds))


CHARACTER_SETS = [
    (b"ISO_IR 100", "Müller^Jürgen".encode("latin-1")),
    (b"ISO_IR 192", "Müller^Jürgen=山田^太郎".encode()),
    (b"GB18030", "王^小东=".encode("gb18030")),
    (b"\\ISO 2022 IR 87", b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B"),
    (b"ISO_IR 6", b"Doe^John"),
]


@pytest.mark.parametrize(("charset", "name"), CHARACTER_SETS, ids=[c for c, _ in CHARACTER_SETS])
def test_character_sets(charset: bytes, name: bytes) -> None:
    ds = make_dataset()
    _raw(ds, 0x00080005, "CS", charset)
    _raw(ds, 0x00100010, "PN", name)
    _raw(ds, 0x00081030, "LO", name.split(b"^")[0] + b"\\ASCII")
    _raw(ds, 0x00100020, "LO", b"ASCII-1")
    _assert_same(_part10(ds))


def test_sequences_private_tags_and_implicit_vr() -> None:
    ds = make_dataset()
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-1", "SRT", "Chest"
    nested = Dataset()
    nested.ReferencedSOPInstanceUID = "1.2.3.4"
    item.ReferencedImageSequence = Sequence([nested])
    ds.AnatomicRegionSequence = Sequence([item, Dataset()])
    ds.ProcedureCodeSequence = Sequence([])
    block = ds.private_block(0x0011, "DICOMFLOW TEST", create=True)
    block.add_new(0x01, "LO", "private value")
    block.add_new(0x02, "OB", b"\x00" * 2000)
    explicit = _part10(ds)
    _assert_same(explicit)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    _assert_same(_part10(ds))


def test_customised_pydicom_reading_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_dataset(PixelSpacing=["0.5", "0.5"], InstanceNumber="7", StudyDate="20240102")
    data = _part10(ds)
    for setting in ("datetime_conversion", "use_DS_decimal", "use_IS_numpy"):
        with monkeypatch.context() as patch:
            patch.setattr(config, setting, True)
            _assert_same(data)


def test_converted_elements_are_kept() -> None:
    data = _part10(make_dataset())
    datasets = [pydicom.dcmread(io.BytesIO(data)) for _ in range(2)]
    for ds in datasets:
        assert ds.PatientName == "Demo^Patient"  # converted before the JSON is built
        ds[0x00081140] = DataElement(0x00081140, "SQ", Sequence([Dataset()]))
    expected = datasets[0].to_json_dict(THRESHOLD, lambda element: _uri(int(element.tag)))
    assert dicomjson.to_json_dict(datasets[1], THRESHOLD, _uri) == expected


def test_image_instance_elements_are_converted_directly(tmp_path: Path) -> None:
    """Every element of a CT instance takes the direct path: none is left to pydicom."""
    file = write_series(make_ct_series(1, rows=32, columns=32), tmp_path)[0]
    ds = pydicom.dcmread(file, defer_size=THRESHOLD)
    raw = {tag for tag, element in ds.items() if isinstance(element, RawDataElement)}
    dicomjson.to_json_dict(ds, THRESHOLD, _uri)
    assert len(raw) > 30
    assert raw == {tag for tag, element in ds.items() if isinstance(element, RawDataElement)}
