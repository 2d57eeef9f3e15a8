"""STOW-RS: uploads are stored into the node part by part; bad parts fail alone."""

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_support import ArchiveWeb, archive_web, encoded, part10

from dicomflow.dicom.factory import make_ct_series
from dicomflow.web.dicomweb import stow as dicomweb_stow
from support import wait_for, write_deflate_bomb

BOUNDARY = "dicomflow-test-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary="{BOUNDARY}"'
FAILED, REFERENCED, REASON = "00081198", "00081199", "00081197"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArchiveWeb]:
    with archive_web(tmp_path_factory.mktemp("stow")) as running:
        yield running


def _body(parts: list[tuple[str, bytes]], closed: bool = True) -> bytes:
    body = b"\r\n"
    for content_type, content in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + content
        body += b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


def _post(archive: ArchiveWeb, content: object, path: str = "/dicomweb/studies", **headers: str):  # type: ignore[no-untyped-def]
    with archive.web.client() as http:
        return http.post(path, content=content, headers={"Content-Type": CONTENT_TYPE, **headers})


def _reasons(answer: dict) -> list[int]:  # type: ignore[type-arg]
    return [item[REASON]["Value"][0] for item in answer.get(FAILED, {}).get("Value", [])]


def _stored(answer: dict) -> list[str]:  # type: ignore[type-arg]
    items = answer.get(REFERENCED, {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]


def test_a_malformed_part_fails_alone_and_the_valid_ones_are_stored(archive: ArchiveWeb) -> None:
    series = [part10(ds) for ds in make_ct_series(2, patient_id="STOW1")]
    garbage = b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"not dicom"
    parts = [("application/dicom", encoded(series[0])), ("application/dicom", garbage)]
    parts.append(("application/dicom", encoded(series[1])))
    response = _post(archive, _body(parts))
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/dicom+json"
    answer = response.json()
    assert _reasons(answer) == [0xC210]
    assert _stored(answer) == [str(ds.SOPInstanceUID) for ds in series]
    retrieve_url = answer[REFERENCED]["Value"][0]["00081190"]["Value"][0]
    assert retrieve_url.endswith(f"/instances/{series[0].SOPInstanceUID}")
    archive.wait_archived(2, PatientID="STOW1")
    client = archive.client()
    found = client.search_for_instances(search_filters={"PatientID": "STOW1"})
    assert len(found) == 2
    assert client.retrieve_bulkdata(retrieve_url) == [encoded(series[0])]


def test_instances_of_another_study_fail_on_a_study_url(archive: ArchiveWeb) -> None:
    mine, other = make_ct_series(1)[0], make_ct_series(1)[0]
    path = f"/dicomweb/studies/{mine.StudyInstanceUID}"
    mixed = _post(
        archive, _body([("application/dicom", encoded(part10(d))) for d in (mine, other)]), path
    )
    assert mixed.status_code == 202
    assert _reasons(mixed.json()) == [0xA900]
    assert mixed.json()["00081190"]["Value"][0].endswith(path)
    refused = _post(archive, _body([("application/dicom", encoded(part10(other)))]), path)
    assert refused.status_code == 409
    assert _stored(refused.json()) == []


def test_dicomweb_client_store_into_a_study(archive: ArchiveWeb) -> None:
    series = [part10(ds) for ds in make_ct_series(2)]
    answer = archive.client().store_instances(series, str(series[0].StudyInstanceUID))
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [
        ds.SOPInstanceUID for ds in series
    ]


def test_parts_that_are_not_dicom_or_cut_short(archive: ArchiveWeb) -> None:
    ds = part10(make_ct_series(1)[0])
    other = _post(archive, _body([("text/plain", b"hello"), ("application/dicom", encoded(ds))]))
    assert other.status_code == 202
    assert _reasons(other.json()) == [0xC000]
    ds = part10(make_ct_series(1)[0])
    cut = _post(
        archive,
        _body([("application/dicom", encoded(ds)), ("application/dicom", b"x")], closed=False),
    )
    assert cut.status_code == 202
    assert _stored(cut.json()) == [str(ds.SOPInstanceUID)]
    assert _reasons(cut.json()) == [0xC000]


@pytest.mark.parametrize(
    ("content_type", "code"),
    [
        ("application/dicom", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', 415),
        ('multipart/related; type="application/dicom"', 400),
    ],
)
def test_wrong_content_types(archive: ArchiveWeb, content_type: str, code: int) -> None:
    response = _post(archive, b"--x\r\n\r\nx\r\n--x--", **{"Content-Type": content_type})
    assert response.status_code == code
    assert response.json()["detail"]


def test_bodies_without_parts_get_400(archive: ArchiveWeb) -> None:
    assert _post(archive, b"").status_code == 400
    assert _post(archive, b"no delimiter at all").status_code == 400


def test_bad_study_parameter_gets_400(archive: ArchiveWeb) -> None:
    response = _post(archive, _body([]), "/dicomweb/studies/1.2.abc")
    assert response.status_code == 400
    assert "StudyInstanceUID" in response.json()["detail"]


def test_uploads_over_the_limit_get_413(
    archive: ArchiveWeb, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dicomweb_stow, "MAX_UPLOAD_BYTES", 1000)
    body = _body([("application/dicom", b"x" * 2000)])
    assert _post(archive, body).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield from (body[k : k + 256] for k in range(0, len(body), 256))

    streamed = _post(archive, chunks())
    assert streamed.status_code == 413
    assert "1000 bytes" in streamed.json()["detail"]
    uploads = Path(archive.node.settings.data_directory) / "uploads"
    assert list(uploads.iterdir()) == []


def test_unauthenticated_upload_gets_401(archive: ArchiveWeb) -> None:
    with httpx.Client(base_url=archive.url) as http:
        response = http.post("/dicomweb/studies", content=_body([]))
    assert response.status_code == 401


def test_large_uploads_are_streamed(archive: ArchiveWeb) -> None:
    series = [part10(ds) for ds in make_ct_series(3, rows=512, columns=512)]
    answer = archive.client().store_instances(series)  # over 1 MB: chunked transfer encoding
    assert len(answer.ReferencedSOPSequence) == 3


def test_one_upload_is_one_association_for_the_pipeline(make_node, web_for, storescp) -> None:  # type: ignore[no-untyped-def]
    from web_pipelines import ForwardingPipeline

    node = make_node(ForwardingPipeline, endpoints=[storescp.endpoint()])
    web = web_for(node)
    series = [part10(ds) for ds in make_ct_series(3, patient_id="ONE-UPLOAD")]
    with web.client() as http:
        response = http.post(
            "/dicomweb/studies",
            content=_body([("application/dicom", encoded(ds)) for ds in series]),
            headers={"Content-Type": CONTENT_TYPE},
        )
    assert response.status_code == 200
    wait_for(lambda: len(storescp.files()) == 3, 30, "the results")
    assert node.counters.rounds_started == 1  # not one round per part
    uids = {pydicom.dcmread(p).SOPInstanceUID for p in storescp.files()}
    assert uids == {ds.SOPInstanceUID for ds in series}


def test_a_deflate_bomb_fails_with_out_of_resources_and_is_not_inflated(
    archive: ArchiveWeb, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """~1 MB inflating to 1 GiB: 409 with FailureReason 0xA700 past maximum_instance_bytes,
    never more than a small multiple of that limit allocated, nothing stored."""
    limit = 16 << 20
    monkeypatch.setattr(archive.node.settings, "maximum_instance_bytes", limit)
    bomb = tmp_path / "bomb.dcm"
    uid = write_deflate_bomb(bomb, 1 << 30, patient_id="STOW-BOMB")
    body = _body([("application/dicom", bomb.read_bytes())])
    received = archive.node.counters.received
    tracemalloc.start()
    try:
        response = _post(archive, body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 409
    answer = response.json()
    assert _reasons(answer) == [0xA700]
    assert answer[FAILED]["Value"][0]["00081155"]["Value"] == [uid]  # from its file meta
    assert peak < 3 * limit
    assert archive.node.counters.received == received
    assert not list(Path(archive.node.settings.data_directory).rglob(f"{uid}.dcm"))


def test_a_part_whose_pixel_data_contradicts_its_module_fails_alone(archive: ArchiveWeb) -> None:
    """Native Pixel Data one row short of Rows x Columns x 16 bits: that part fails with
    FailureReason 0xA900 and is not stored; the valid parts of the same request are."""
    series = [part10(ds) for ds in make_ct_series(3, patient_id="STOW-PIXELS")]
    short = series[1]
    short.PixelData = short.PixelData[: -short.Columns * 2]
    response = _post(archive, _body([("application/dicom", encoded(ds)) for ds in series]))
    assert response.status_code == 202
    answer = response.json()
    assert _reasons(answer) == [0xA900]
    assert answer[FAILED]["Value"][0]["00081155"]["Value"] == [str(short.SOPInstanceUID)]
    assert _stored(answer) == [str(series[0].SOPInstanceUID), str(series[2].SOPInstanceUID)]
    archive.wait_archived(2, PatientID="STOW-PIXELS")
    data = Path(archive.node.settings.data_directory)
    assert not list(data.rglob(f"{short.SOPInstanceUID}.dcm"))
