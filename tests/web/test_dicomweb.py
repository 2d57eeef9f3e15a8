"""DICOMweb over the archive with dicomweb-client as the client: store by STOW-RS, search
by QIDO-RS, read back by WADO-RS."""

import io
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from dicomweb_support import ArchiveWeb, archive_web, encoded, part10
from playwright.sync_api import Browser, sync_playwright
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from dicomflow.dicom.factory import make_ct_series
from dicomflow.web.dicomweb import multipart
from support import storescu


@pytest.fixture(scope="module")
def uploads() -> dict[str, list[Dataset]]:
    first = [part10(ds) for ds in make_ct_series(3, patient_id="WEB001", patient_name="Doe^Jane")]
    second = make_ct_series(2, patient_id="WEB002", patient_name="Roe^Rick", modality="MR")
    for ds in second:
        ds.StudyDate = "20240315"
    files = {name: pydicom.dcmread(get_testdata_file(f"{name}.dcm")) for name in TEST_FILES}
    for name in SAME_IMAGE_FILES:  # the jp2k image in other syntaxes, as other series
        files[name] = _in_new_series(pydicom.dcmread(get_testdata_file(f"{name}.dcm")))
    return {"first": first, "second": [part10(ds) for ds in second]} | {
        name: [ds] for name, ds in files.items()
    }


TEST_FILES = ("CT_small", "rtdose", "SC_rgb_rle_2frame", "MR_small_jp2klossless")
SAME_IMAGE_FILES = ("MR_small_bigendian", "MR_small_implicit")


def _in_new_series(ds: Dataset) -> Dataset:
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


@pytest.fixture(scope="module")
def archive(
    tmp_path_factory: pytest.TempPathFactory, uploads: dict[str, list[Dataset]]
) -> Iterator[ArchiveWeb]:
    with archive_web(tmp_path_factory.mktemp("dicomweb")) as running:
        client = running.client()
        everything = [ds for datasets in uploads.values() for ds in datasets]
        response = client.store_instances(everything)
        assert len(response.ReferencedSOPSequence) == len(everything)
        assert "FailedSOPSequence" not in response
        running.wait_archived(len(everything))
        yield running


def _uids(ds: Dataset) -> tuple[str, str, str]:
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _instance_path(ds: Dataset) -> str:
    study, series, instance = _uids(ds)
    return f"/dicomweb/studies/{study}/series/{series}/instances/{instance}"


def _parts(response: httpx.Response) -> list[bytes]:
    assert response.status_code == 200, response.text
    content_type = response.headers["content-type"]
    boundary = multipart.boundary_of(content_type)
    assert content_type.startswith("multipart/related") and boundary is not None
    return [response.content[p.start : p.end] for p in multipart.split(response.content, boundary)]


AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def test_round_trip_gives_the_uploaded_bytes(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    client = archive.client()
    with archive.web.client() as http:
        for datasets in uploads.values():
            for ds in datasets:
                as_stored = http.get(_instance_path(ds), headers={"Accept": AS_STORED})
                assert _parts(as_stored) == [encoded(ds)]
                back = client.retrieve_instance(
                    *_uids(ds), media_types=(("application/dicom", "*"),)
                )
                assert back.SOPInstanceUID == ds.SOPInstanceUID
                assert back.PixelData == ds.PixelData


@pytest.mark.parametrize(
    "accept", ["", "*/*", 'multipart/related; type="application/dicom"', "application/dicom"]
)
@pytest.mark.parametrize(
    "name", ["MR_small_bigendian", "MR_small_implicit", "MR_small_jp2klossless"]
)
def test_instances_are_served_in_explicit_vr_little_endian_by_default(  # type: ignore[no-untyped-def]
    archive: ArchiveWeb, uploads, name: str, accept: str
) -> None:
    original = uploads[name][0]
    with archive.web.client() as http:
        response = http.get(_instance_path(original), headers={"Accept": accept})
    single = accept == "application/dicom"
    data = response.content if single else _parts(response)[0]
    served = pydicom.dcmread(io.BytesIO(data))
    assert served.file_meta.TransferSyntaxUID == EXPLICIT
    assert served.original_encoding == (False, True)  # explicit VR, little endian
    assert served.SOPInstanceUID == original.SOPInstanceUID
    assert (served.pixel_array == original.pixel_array).all()


def test_series_and_study_retrieval(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    client = archive.client()
    first = uploads["first"]
    study, series, _ = _uids(first[0])
    instances = client.retrieve_series(study, series)
    assert [ds.InstanceNumber for ds in instances] == [1, 2, 3]
    assert {ds.SOPInstanceUID for ds in client.retrieve_study(study)} == {
        ds.SOPInstanceUID for ds in first
    }


def test_metadata_matches_and_points_at_bulk_data(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    client = archive.client()
    ds = uploads["CT_small"][0]
    study, series, instance = _uids(ds)
    metadata = client.retrieve_instance_metadata(study, series, instance)
    assert metadata["00100020"]["Value"] == [ds.PatientID]
    assert metadata["00280010"]["Value"] == [ds.Rows]
    assert not any(tag.startswith("0002") for tag in metadata)
    bulk_uri = metadata["7FE00010"]["BulkDataURI"]
    assert bulk_uri.startswith(f"{archive.url}/dicomweb/studies/{study}/")
    assert client.retrieve_bulkdata(bulk_uri) == [ds.PixelData]
    first = uploads["first"]
    listed = client.retrieve_series_metadata(*_uids(first[0])[:2])
    assert sorted(item["00200013"]["Value"][0] for item in listed) == [1, 2, 3]
    assert len(client.retrieve_study_metadata(study)) == 1


def test_frames_of_native_and_encapsulated_instances(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    client = archive.client()
    dose = uploads["rtdose"][0]
    size = dose.Rows * dose.Columns * dose.BitsAllocated // 8
    frames = client.retrieve_instance_frames(*_uids(dose), frame_numbers=[1, 15])
    assert frames == [dose.PixelData[:size], dose.PixelData[14 * size : 15 * size]]
    octets = client.retrieve_instance_frames(
        *_uids(dose), frame_numbers=[2], media_types=("application/octet-stream",)
    )
    assert octets == [dose.PixelData[size : 2 * size]]
    rle = uploads["SC_rgb_rle_2frame"][0]
    expected = list(generate_frames(rle.PixelData, number_of_frames=2))
    assert client.retrieve_instance_frames(*_uids(rle), frame_numbers=[2, 1]) == expected[::-1]
    decoded = client.retrieve_instance_frames(
        *_uids(rle), frame_numbers=[2], media_types=("application/octet-stream",)
    )
    assert decoded == [rle.pixel_array[1].tobytes()]
    single = uploads["CT_small"][0]
    assert client.retrieve_instance_frames(*_uids(single), frame_numbers=[1]) == [single.PixelData]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]

#: What cornerstone's WADO-RS image loader (OHIF v3) sends for every frame.
CORNERSTONE_FRAMES = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.mark.parametrize(
    "name", ["MR_small_jp2klossless", "SC_rgb_rle_2frame", "CT_small", "MR_small_bigendian"]
)
def test_frames_as_a_viewer_asks_for_them(archive: ArchiveWeb, uploads, name: str) -> None:  # type: ignore[no-untyped-def]
    ds = uploads[name][0]
    syntax = ds.file_meta.TransferSyntaxUID
    with archive.web.client() as http:
        stored = http.get(f"{_instance_path(ds)}/frames/1", headers={"Accept": CORNERSTONE_FRAMES})
        native = http.get(
            f"{_instance_path(ds)}/frames/1",
            headers={"Accept": 'multipart/related; type="application/octet-stream"'},
        )
    assert stored.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"'
    )
    served_syntax = syntax if syntax.is_compressed else EXPLICIT
    assert (
        f"Content-Type: application/octet-stream; transfer-syntax={served_syntax}\r\n".encode()
        in stored.content
    )
    count = int(ds.get("NumberOfFrames", 1))
    first = (
        next(generate_frames(ds.PixelData, number_of_frames=count))
        if syntax.is_compressed
        else None
    )
    assert _parts(stored) == [first if first is not None else _native_frame(ds)]
    assert f"transfer-syntax={EXPLICIT}".encode() in native.content
    assert _parts(native) == [_native_frame(ds)]
    named = 'multipart/related; type="application/octet-stream"; transfer-syntax=' + served_syntax
    with archive.web.client() as http:
        same = http.get(f"{_instance_path(ds)}/frames/1", headers={"Accept": named})
    assert _parts(same) == _parts(stored)


def test_the_searches_and_metadata_requests_of_ohif(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    """OHIF v3's study list, study and series searches and metadata, as it builds them."""
    ds = uploads["first"][0]
    study, series, _ = _uids(ds)
    fields = "includefield=00081030%2C00080060%2C00080090%2C00100030"
    paging = "limit=101&offset=0&fuzzymatching=false"
    with archive.web.client() as http:
        http.headers["Accept"] = "application/dicom+json"
        listed = http.get(f"/dicomweb/studies?{paging}&{fields}").json()
        one = http.get(f"/dicomweb/studies?StudyInstanceUID={study}&{paging}&{fields}").json()
        patient = http.get(f"/dicomweb/studies?00100020=*WEB001*&{paging}&{fields}").json()
        in_study = http.get(f"/dicomweb/studies/{study}/series?includefield=0008103E%2C00080021")
        metadata = http.get(f"/dicomweb/studies/{study}/series/{series}/metadata").json()
    assert len(listed) == 6
    assert [item["0020000D"]["Value"] for item in one] == [[study]]
    assert [item["0020000D"]["Value"] for item in patient] == [[study]]
    assert [item["0020000E"]["Value"] for item in in_study.json()] == [[series]]
    assert sorted(item["00200013"]["Value"][0] for item in metadata) == [1, 2, 3]


#: cornerstone's WADO-RS frame request and multipart parsing (getPixelData,
#: getTransferSyntaxForContentType), as it runs in the browser.
CORNERSTONE_XHR = """async ([url, token, accept]) => {
  const xhr = await new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open('get', url, true);
    request.responseType = 'arraybuffer';
    request.setRequestHeader('Accept', accept);
    request.setRequestHeader('Authorization', 'Bearer ' + token);
    request.onload = () => resolve(request);
    request.onerror = reject;
    request.send();
  });
  if (xhr.status !== 200) return {status: xhr.status};
  const text = new TextDecoder('latin1').decode(new Uint8Array(xhr.response));
  const headerEnd = text.indexOf('\\r\\n\\r\\n');
  const lines = text.slice(0, headerEnd).split('\\r\\n');
  const boundary = lines.find((line) => line.substr(0, 2) === '--');
  const typeLine = lines.find((line) => line.substr(0, 13) === 'Content-Type:');
  const contentType = typeLine.substr(13).trim();
  const parameters = {};
  contentType.split(';').forEach((parameter) => {
    const pair = parameter.split('=');
    if (pair.length === 2) parameters[pair[0].trim()] = pair[1].trim().replace(/"/g, '');
  });
  const offset = headerEnd + 4;
  return {status: xhr.status, transferSyntax: parameters['transfer-syntax'],
          length: text.indexOf(boundary, offset) - offset - 2};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_cornerstone_in_chromium_reads_frames_and_their_transfer_syntax(  # type: ignore[no-untyped-def]
    archive: ArchiveWeb, uploads, browser: Browser
) -> None:
    page = browser.new_page()
    page.goto(f"{archive.url}/health")
    for name in ("MR_small_jp2klossless", "SC_rgb_rle_2frame", "CT_small"):
        ds = uploads[name][0]
        url = f"{archive.url}{_instance_path(ds)}/frames/1"
        found = page.evaluate(CORNERSTONE_XHR, [url, archive.web.token, CORNERSTONE_FRAMES])
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed:
            count = int(ds.get("NumberOfFrames", 1))
            expected = (syntax, len(next(generate_frames(ds.PixelData, number_of_frames=count))))
        else:
            expected = (EXPLICIT, len(_native_frame(ds)))
        assert found["status"] == 200, name
        assert (found["transferSyntax"], found["length"]) == expected, name


def _native_frame(ds: Dataset) -> bytes:
    pixels = ds.pixel_array if int(ds.get("NumberOfFrames", 1)) == 1 else ds.pixel_array[0]
    return bytes(pixels.astype(pixels.dtype.newbyteorder("<")).tobytes())


def _jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8"
    with av.open(io.BytesIO(data), format="mjpeg") as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


@pytest.mark.parametrize("name", ["CT_small", "MR_small_jp2klossless", "SC_rgb_rle_2frame"])
def test_rendered_instances_decode(archive: ArchiveWeb, uploads, name: str) -> None:  # type: ignore[no-untyped-def]
    ds = uploads[name][0]
    rendered = archive.client().retrieve_instance_rendered(*_uids(ds), media_types=("image/jpeg",))
    assert _jpeg_size(rendered) == (ds.Columns, ds.Rows)


def test_rendered_links_of_the_dashboard(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    study, series, instance = _uids(uploads["first"][1])
    base = f"/dicomweb/studies/{study}/series/{series}"
    with archive.web.client() as http:
        thumbnail = http.get(f"{base}/thumbnail")
        rendered = http.get(f"{base}/instances/{instance}/rendered", params={"viewport": "32,32"})
        windowed = http.get(
            f"{base}/instances/{instance}/rendered", params={"window": "40,400,LINEAR"}
        )
        png = http.get(f"{base}/thumbnail", headers={"Accept": "image/png"})
        refused = http.get(f"{base}/thumbnail", headers={"Accept": "image/gif"})
        rle = _uids(uploads["SC_rgb_rle_2frame"][0])
        rle_base = f"/dicomweb/studies/{rle[0]}/series/{rle[1]}/instances/{rle[2]}"
        second_frame = http.get(f"{rle_base}/frames/2/rendered")
        browser = http.get(f"{rle_base}/thumbnail", headers={"Accept": BROWSER_ACCEPT})
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert _jpeg_size(thumbnail.content) == (128, 128)
    assert _jpeg_size(rendered.content) == (32, 32)
    assert _jpeg_size(windowed.content) == (64, 64)
    assert png.headers["content-type"] == "image/png"
    assert _png_size(png.content) == (128, 128)
    assert refused.status_code == 406
    assert _jpeg_size(second_frame.content) == (100, 100)
    assert _jpeg_size(browser.content) == (128, 128)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with av.open(io.BytesIO(data), format="png_pipe") as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def test_study_and_series_rendered(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    ct = uploads["CT_small"][0]
    study, series, _ = _uids(ct)
    with archive.web.client() as http:
        whole = http.get(f"/dicomweb/studies/{study}/rendered", headers={"Accept": "image/jpeg"})
        png = http.get(f"/dicomweb/studies/{study}/rendered", params={"accept": "image/png"})
        fitted = http.get(
            f"/dicomweb/studies/{study}/series/{series}/rendered",
            params={"viewport": "32,32", "window": "40,400"},
        )
        thumbnail = http.get(f"/dicomweb/studies/{study}/thumbnail", params={"accept": "image/png"})
        other = http.get(f"/dicomweb/studies/{study}/rendered", params={"accept": "image/gif"})
    assert whole.headers["content-type"] == "image/jpeg"
    assert _jpeg_size(whole.content) == (ct.Columns, ct.Rows)
    assert png.headers["content-type"] == "image/png"
    assert _png_size(png.content) == (ct.Columns, ct.Rows)
    assert _jpeg_size(fitted.content) == (32, 32)
    assert _png_size(thumbnail.content) == (128, 128)
    assert other.status_code == 406


BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def _values(results: list[dict], tag: str) -> list:  # type: ignore[type-arg]
    return sorted(str(item[tag]["Value"][0]) for item in results if item.get(tag, {}).get("Value"))


def test_study_search_filters(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    client = archive.client()
    assert len(client.search_for_studies()) == 6
    doe = client.search_for_studies(search_filters={"PatientName": "doe*"})
    assert _values(doe, "00100020") == ["WEB001"]
    assert doe[0]["00201208"]["Value"] == [3]
    assert doe[0]["00201206"]["Value"] == [1]
    assert doe[0]["00080061"]["Value"] == ["CT"]
    assert doe[0]["00081190"]["Value"][0].endswith(str(uploads["first"][0].StudyInstanceUID))
    march = client.search_for_studies(search_filters={"StudyDate": "20240301-20240331"})
    assert _values(march, "00100020") == ["WEB002"]
    since = client.search_for_studies(search_filters={"StudyDate": "20240101-"})
    assert _values(since, "00100020") == ["WEB001", "WEB002"]
    by_tag = client.search_for_studies(search_filters={"00100020": "WEB00?"})
    assert len(by_tag) == 2
    mr = client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert {item["00100020"]["Value"][0] for item in mr} >= {"WEB002"}
    assert client.search_for_studies(search_filters={"PatientName": "Doe.*"}) == []
    hostile = "*a" * 60 + "*b"  # no backtracking blow-up
    assert client.search_for_studies(search_filters={"StudyDescription": hostile}) == []
    paged = [
        client.search_for_studies(limit=2, offset=offset)[0]["0020000D"]["Value"][0]
        for offset in (0, 2, 4)
    ]
    assert len(set(paged)) == 3


def test_series_and_instance_search(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    client = archive.client()
    study, series, _ = _uids(uploads["first"][0])
    found = client.search_for_series(study)
    assert len(found) == 1
    assert found[0]["00201209"]["Value"] == [3]
    assert found[0]["0020000E"]["Value"] == [series]
    mr = client.search_for_series(search_filters={"Modality": "MR"}, fields=["PatientID"])
    assert {item["00100020"]["Value"][0] for item in mr} >= {"WEB002"}
    instances = client.search_for_instances(study, series, search_filters={"InstanceNumber": 2})
    assert _values(instances, "00080018") == [str(uploads["first"][1].SOPInstanceUID)]
    paged = client.search_for_instances(study, series, limit=2, offset=1)
    assert [item["00200013"]["Value"][0] for item in paged] == [2, 3]
    everything = client.search_for_instances(search_filters={"PatientID": "WEB*"})
    assert len(everything) == 5
    assert "00100010" in everything[0]
    with_all = client.search_for_instances(study, series, fields=["all"], limit=1)
    assert "00280030" in with_all[0]
    uid = str(uploads["first"][2].SOPInstanceUID)
    assert len(client.search_for_instances(search_filters={"SOPInstanceUID": uid})) == 1


BAD_PATHS = [
    ("/dicomweb/studies/abc/series", "StudyInstanceUID"),
    ("/dicomweb/studies/1.2.3/series/..%2F..%2Fetc/instances", "SeriesInstanceUID"),
    ("/dicomweb/studies/1.2.3/series/1.2/instances/1.02/metadata", "SOPInstanceUID"),
    ("/dicomweb/studies/1.2.3/series/1.2/instances/%00/rendered", "SOPInstanceUID"),
    ("/dicomweb/studies/" + "1" * 65, "StudyInstanceUID"),
    ("/dicomweb/studies/1.2.3./metadata", "StudyInstanceUID"),
]


@pytest.mark.parametrize(("path", "name"), BAD_PATHS)
def test_path_parameters_that_are_not_uids_get_400(
    archive: ArchiveWeb, path: str, name: str
) -> None:
    with archive.web.client() as http:
        response = http.get(path)
    assert response.status_code == 400
    assert name in response.json()["detail"]


def test_bad_queries_and_frame_lists_get_400(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    study, series, instance = _uids(uploads["rtdose"][0])
    base = f"/dicomweb/studies/{study}/series/{series}/instances/{instance}"
    with archive.web.client() as http:
        unknown = http.get("/dicomweb/studies", params={"NoSuchKeyword": "x"})
        assert "NoSuchKeyword" in unknown.json()["detail"]
        for params in ({"limit": "-1"}, {"offset": "\u00b2"}, {"includefield": "Nope"}):
            assert http.get("/dicomweb/studies", params=params).status_code == 400, params
        for frames in ("0,x", "0", "\u00b2", "1,,2", "1" * 40):
            answer = http.get(f"{base}/frames/{frames}")
            assert answer.status_code == 400, frames
            assert "frames" in answer.json()["detail"]
        for tag in ("..x", "..%2Fx", "7FE00010%2F.."):
            assert http.get(f"{base}/bulkdata/{tag}").status_code == 400, tag
        assert http.get(f"{base}/frames/1%2F..").status_code == 400
        for window in ("nan,1", "40", "a,b"):
            rendered = http.get(f"{base}/rendered", params={"window": window})
            assert rendered.status_code == 400, window
    assert unknown.status_code == 400


def test_unknown_uids_get_404(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    study, series, instance = _uids(uploads["rtdose"][0])
    paths = [
        "/dicomweb/studies/1.2.3.4",
        "/dicomweb/studies/1.2.3.4/metadata",
        f"/dicomweb/studies/{study}/series/1.2.3.4",
        f"/dicomweb/studies/{study}/series/{series}/instances/1.2.3.4",
        f"/dicomweb/studies/{study}/series/{series}/instances/1.2.3.4/rendered",
        f"/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/16",
    ]
    with archive.web.client() as http:
        for path in paths:
            assert http.get(path).status_code == 404, path
        assert http.get("/dicomweb/studies", params={"PatientID": "nobody"}).json() == []


def test_accept_negotiation(archive: ArchiveWeb, uploads) -> None:  # type: ignore[no-untyped-def]
    study, series, instance = _uids(uploads["CT_small"][0])
    url = f"/dicomweb/studies/{study}/series/{series}/instances/{instance}"
    other_syntax = (
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    )
    with archive.web.client() as http:
        assert http.get(url, headers={"Accept": other_syntax}).status_code == 406
        assert http.get(url, headers={"Accept": "application/dicom+xml"}).status_code == 406
        assert http.get(f"{url}/metadata", headers={"Accept": "text/html"}).status_code == 406
        assert http.get("/dicomweb/studies", headers={"Accept": "image/png"}).status_code == 406
        same = http.get(
            url, headers={"Accept": other_syntax.replace("1.2.840.10008.1.2.4.50", "*")}
        )
        single = http.get(url, headers={"Accept": "application/dicom"})
    assert single.headers["content-type"] == "application/dicom"
    assert single.content == encoded(uploads["CT_small"][0])
    assert same.status_code == 200
    assert same.headers["content-type"].startswith('multipart/related; type="application/dicom"')


def test_without_an_archive_searches_are_empty_and_retrievals_404(tmp_path: Path, web_for) -> None:  # type: ignore[no-untyped-def]
    from dicomflow.settings import build_settings

    web = web_for(settings=build_settings(data_directory=tmp_path / "data"))
    client = DICOMwebClient(f"{web.url}/dicomweb", headers={"Authorization": f"Bearer {web.token}"})
    assert client.search_for_studies() == []
    with web.client() as http:
        missing = http.get("/dicomweb/studies/1.2.3/series/1.2.4/thumbnail")
        upload = http.post(
            "/dicomweb/studies",
            content=b"--b\r\n\r\nx\r\n--b--",
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
    assert missing.status_code == 404
    assert "archive_datastore" in missing.json()["detail"]
    assert upload.status_code == 503


def test_unauthenticated_dicomweb_gets_401(archive: ArchiveWeb) -> None:
    with httpx.Client(base_url=archive.url) as http:
        assert http.get("/dicomweb/studies").status_code == 401
        assert http.post("/dicomweb/studies", content=b"x").status_code == 401


EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"


@pytest.mark.parametrize(
    ("name", "syntax"),
    [
        ("CT_small", IMPLICIT),
        ("MR_small_jp2klossless", EXPLICIT),
        ("SC_rgb_rle_2frame", EXPLICIT),
        ("SC_rgb_rle_2frame", IMPLICIT),
    ],
)
def test_instances_are_converted_to_an_uncompressed_syntax_when_asked(  # type: ignore[no-untyped-def]
    archive: ArchiveWeb, uploads, name: str, syntax: str
) -> None:
    original = uploads[name][0]
    study, series, instance = _uids(original)
    url = f"/dicomweb/studies/{study}/series/{series}/instances/{instance}"
    single = f"application/dicom; transfer-syntax={syntax}"
    multi = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
    with archive.web.client() as http:
        one = http.get(url, headers={"Accept": single})
        parts = http.get(f"/dicomweb/studies/{study}/series/{series}", headers={"Accept": multi})
    assert one.status_code == 200 and one.headers["content-type"] == "application/dicom"
    assert parts.status_code == 200
    converted = pydicom.dcmread(io.BytesIO(one.content))
    assert converted.file_meta.TransferSyntaxUID == syntax
    assert converted.SOPInstanceUID == original.SOPInstanceUID
    assert (converted.pixel_array == original.pixel_array).all()
    assert one.content in parts.content


def test_an_instance_with_an_unparsable_value_is_searchable_and_has_metadata(
    tmp_path: Path,
) -> None:
    """pydicom's badVR.dcm (NumberOfFrames "1A"), received by C-STORE: QIDO-RS finds it and
    WADO-RS metadata gives that element as UN with its bytes, the others as usual."""
    source = Path(str(get_testdata_file("badVR.dcm")))
    original = pydicom.dcmread(source)
    with archive_web(tmp_path) as running:
        storescu(running.node.port, [source])
        running.wait_archived(1)
        client = running.client()
        [metadata] = client.retrieve_series_metadata(
            str(original.StudyInstanceUID), str(original.SeriesInstanceUID)
        )
    assert metadata["00280008"] == {"vr": "UN", "InlineBinary": "MUE="}
    assert metadata["00080018"]["Value"] == [str(original.SOPInstanceUID)]
    assert metadata["00100020"]["Value"] == [str(original.PatientID)]


def test_stow_refuses_an_instance_the_archive_cannot_file(tmp_path: Path) -> None:
    [good, bad] = [part10(ds) for ds in make_ct_series(2, patient_id="STOW")]
    del bad.SeriesInstanceUID
    with archive_web(tmp_path) as running:
        response = running.client().store_instances([good, bad])
        running.wait_archived(1)
    [failed] = response.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == bad.SOPInstanceUID
    assert failed.FailureReason == 0xA900
    [stored] = response.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == good.SOPInstanceUID
