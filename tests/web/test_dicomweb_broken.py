"""DICOMweb over an archive with broken content: a series whose archiving failed (its
metadata left without instances) and an instance whose pixel data cannot be decoded."""

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from dicomweb_support import ArchiveWeb, archive_web
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from dicomflow.engine.node import wait_until
from dicomflow.web.dicomweb import multipart

#: What a failed archive write leaves for a series: metadata without any instance.
EMPTY_METADATA = {"cod": {"instances": {}}, "other": {}}
FAILED_STUDY, FAILED_SERIES = "1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.2"


def _undecodable() -> Dataset:
    """CT_small in a new series, its pixel data a JPEG 2000 codestream cut after the SIZ
    marker: the header parses, no decoder can read the image."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(200)])
    ds["PixelData"].VR = "OB"
    return ds


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ArchiveWeb, Path, Dataset]]:
    folder = tmp_path_factory.mktemp("broken")
    with archive_web(folder) as running:
        undecodable = _undecodable()
        bad_vr = pydicom.dcmread(get_testdata_file("badVR.dcm"))  # InstanceNumber "1A"
        running.client().store_instances([undecodable, bad_vr])
        running.wait_archived(1, SOPInstanceUID=str(undecodable.SOPInstanceUID))
        archive = folder / "archive" / "studies"
        bad_series = archive / bad_vr.StudyInstanceUID / "series" / bad_vr.SeriesInstanceUID
        assert wait_until((bad_series / "metadata.json").exists, 30)
        failed = archive / FAILED_STUDY / "series" / FAILED_SERIES
        failed.mkdir(parents=True)
        (failed / "metadata.json").write_text(json.dumps(EMPTY_METADATA))
        yield running, folder, undecodable


def test_a_failed_series_is_not_searchable(broken) -> None:  # type: ignore[no-untyped-def]
    running, _, undecodable = broken
    client = running.client()
    studies = client.search_for_studies()
    assert all(study["0020000D"]["Value"] for study in studies), studies
    assert all(study["00201208"]["Value"][0] > 0 for study in studies), studies
    assert FAILED_STUDY not in {study["0020000D"]["Value"][0] for study in studies}
    assert str(undecodable.StudyInstanceUID) in {s["0020000D"]["Value"][0] for s in studies}
    series = client.search_for_series()
    assert all(s["0020000E"]["Value"] and s["00201209"]["Value"][0] > 0 for s in series)
    assert client.search_for_series(FAILED_STUDY) == []


IMAGE_PATHS = ["/thumbnail", "/rendered", "/series/{series}/thumbnail", "/series/{series}/rendered"]


@pytest.mark.parametrize("path", IMAGE_PATHS)
def test_images_of_a_failed_series_are_not_found(broken, path: str) -> None:  # type: ignore[no-untyped-def]
    running, _, _ = broken
    url = f"/dicomweb/studies/{FAILED_STUDY}" + path.format(series=FAILED_SERIES)
    with running.web.client() as http:
        assert http.get(url).status_code == 404, url


INSTANCE_PATHS = [
    "/series/{series}/instances/{instance}/rendered",
    "/series/{series}/instances/{instance}/frames/1/rendered",
    "/series/{series}/instances/{instance}/thumbnail",
    "/series/{series}/thumbnail",
    "/series/{series}/rendered",
    "/rendered",
]


@pytest.mark.parametrize("path", INSTANCE_PATHS)
def test_undecodable_pixel_data_gets_406_and_one_log_line(  # type: ignore[no-untyped-def]
    broken, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    running, _, ds = broken
    uid = str(ds.SOPInstanceUID)
    url = f"/dicomweb/studies/{ds.StudyInstanceUID}" + path.format(
        series=ds.SeriesInstanceUID, instance=uid
    )
    caplog.set_level(logging.INFO)
    with running.web.client() as http:
        response = http.get(url)
    assert response.status_code == 406, url
    assert uid in response.json()["detail"]
    lines = [r for r in caplog.records if r.name.startswith(("dicomflow", "pydicom", "uvicorn"))]
    assert [r.getMessage() for r in lines if r.levelno >= logging.WARNING and uid in r.getMessage()]
    assert len([r for r in lines if r.levelno >= logging.WARNING]) == 1, lines
    assert not [r for r in lines if r.exc_info], lines


def test_archiving_an_undecodable_instance_logs_no_traceback(broken) -> None:  # type: ignore[no-untyped-def]
    _, folder, ds = broken
    logs = [p.read_text() for p in (folder / "data" / "logs" / "jobs").glob("*.log")]
    names = (str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    about_it = [text for text in logs if any(name in text for name in names)]
    assert about_it, "no job log names the series or the instance"
    assert not [text for text in about_it if "Traceback" in text], about_it


def test_an_instance_that_cannot_be_converted_is_sent_as_stored_in_its_series(  # type: ignore[no-untyped-def]
    broken, caplog: pytest.LogCaptureFixture
) -> None:
    running, _, ds = broken
    caplog.set_level(logging.INFO)
    series = f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    with running.web.client() as http:
        whole = http.get(series, headers={"Accept": 'multipart/related; type="application/dicom"'})
        alone = http.get(f"{series}/instances/{ds.SOPInstanceUID}")
    assert whole.status_code == 200
    assert f"transfer-syntax={JPEG2000Lossless}".encode() in whole.content
    boundary = multipart.boundary_of(whole.headers["content-type"])
    assert boundary is not None
    parts = [whole.content[p.start : p.end] for p in multipart.split(whole.content, boundary)]
    assert [pydicom.dcmread(io.BytesIO(part)).SOPInstanceUID for part in parts] == [
        ds.SOPInstanceUID
    ]
    assert alone.status_code == 406
    assert "transfer-syntax=*" in alone.json()["detail"]
    assert not [r for r in caplog.records if r.exc_info], caplog.records
