"""The dashboard's archive, outbox and services pages, with their actions."""

import json
from pathlib import Path

import pytest
from pydicom import Dataset
from web_pipelines import ForwardingPipeline

from dicomflow.cod import CODObject
from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.engine.outbox import last_error
from dicomflow.engine.series_archive import archive_series
from dicomflow.settings import build_settings
from support import StoreSCPPeer, storescu, wait_for

HOSTILE = "<script>alert(1)</script>"
JSON = {"accept": "application/json"}


@pytest.fixture
def archived(tmp_path: Path) -> list[Dataset]:
    """A series with a hostile PatientName archived in ``tmp_path/archive``."""
    series = make_ct_series(3, rows=8, columns=8, patient_name=HOSTILE, patient_id="SECRET-7")
    folder = write_series(series, tmp_path / "series")[0].parent
    archive_series(input_dir=str(folder), datastore=archive(tmp_path))
    return series


def archive(tmp_path: Path) -> str:
    return str(tmp_path / "archive")


@pytest.mark.parametrize("show", [False, True])
def test_the_archive_lists_studies_series_and_instances_with_thumbnails(  # type: ignore[no-untyped-def]
    web_for, tmp_path: Path, archived: list[Dataset], show: bool
):
    settings = build_settings(
        data_directory=tmp_path / "data",
        archive_datastore=archive(tmp_path),
        show_patient_identifiers=show,
    )
    web = web_for(settings=settings)
    study, series = str(archived[0].StudyInstanceUID), str(archived[0].SeriesInstanceUID)
    with web.client() as client:
        studies_page = client.get("/archive").text
        study_page = client.get(f"/archive/studies/{study}").text
        series_page = client.get(f"/archive/studies/{study}/series/{series}").text
        [listed] = client.get("/api/archive/studies").json()["studies"]
        found = client.get(f"/api/archive/studies/{study}/series/{series}").json()
        assert client.get("/archive/studies/1.2.3").status_code == 404
        assert client.get(f"/archive/studies/{study}/series/1.2.3").status_code == 404
    assert listed["uid"] == study and listed["series"] == 1 and listed["modality"] == "CT"
    assert f"/dicomweb/studies/{study}/series/{series}/thumbnail" in study_page
    uids = [instance["uid"] for instance in found["instances"]]
    assert uids == [str(ds.SOPInstanceUID) for ds in archived]
    for uid in uids:
        assert f"/dicomweb/studies/{study}/series/{series}/instances/{uid}/rendered" in series_page
    pages = studies_page + study_page + series_page
    assert HOSTILE not in pages
    assert ("SECRET-7" in pages) is show
    assert ("&lt;script&gt;" in pages) is show
    assert (listed["patient"] in studies_page) is not show


def test_a_hanging_lock_is_released_after_confirmation(  # type: ignore[no-untyped-def]
    web_for, tmp_path: Path, archived: list[Dataset]
):
    settings = build_settings(data_directory=tmp_path / "data", archive_datastore=archive(tmp_path))
    web = web_for(settings=settings)
    study, series = str(archived[0].StudyInstanceUID), str(archived[0].SeriesInstanceUID)
    CODObject(datastore_path=archive(tmp_path), study_uid=study, series_uid=series, lock=True)
    lock = tmp_path / "archive" / "studies" / study / "series" / series / ".cod.lock"
    assert lock.exists()
    page = f"/archive/studies/{study}/series/{series}"
    with web.client() as client:
        assert "Locked" in client.get(page).text
        assert "Release the lock" in client.get(f"{page}/unlock").text
        assert client.post(f"{page}/unlock").status_code == 400
        assert lock.exists()
        released = client.post(f"{page}/unlock", data={"confirm": "release"})
        assert released.status_code == 303 and released.headers["location"] == page
        assert not lock.exists()
        assert "is released" in client.get(page).text
        again = client.post(f"{page}/unlock", data={"confirm": "release"}, headers=JSON)
        assert again.status_code == 409 and "has no lock" in again.json()["message"]


def test_archive_pages_without_an_archive(web_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    web = web_for(settings=build_settings(data_directory=tmp_path / "data"))
    with web.client() as client:
        assert "has no archive" in client.get("/archive").text
        assert client.get("/api/archive/studies").status_code == 404


def write_service(root: Path, name: str, settings: object) -> None:
    folder = root / "registry" / name
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps(settings))


def test_services_are_shown_with_their_settings_and_errors(web_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "services"
    job = {
        "jobName": "segment",
        "worker": "segmenter.run",
        "callback": "wanted",
        "timeout": "10m",
        "params": {"threshold": HOSTILE},
        "description": "Segments <b>livers</b>",
    }
    write_service(root, "livers", [job])
    write_service(root, "broken", [{"jobName": "x", "dependson": "y"}])
    web = web_for(
        settings=build_settings(data_directory=tmp_path / "data", services_directory=root)
    )
    with web.client() as client:
        page = client.get("/services").text
        listed = {s["name"]: s for s in client.get("/api/services").json()["services"]}
    assert listed["livers"]["jobs"][0]["timeout_s"] == 600
    assert listed["livers"]["jobs"][0]["worker"] == "segmenter.run"
    assert "dependson" in listed["broken"]["error"]
    assert "segmenter.run" in page and "10 min 0 s" in page
    assert HOSTILE not in page and "<b>livers" not in page
    assert "Segments &lt;b&gt;livers&lt;/b&gt;" in page


def test_an_item_waiting_in_the_outbox_is_shown_and_re_sent(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path
):
    peer = StoreSCPPeer(tmp_path / "pacs")
    peer.stop()  # the endpoint is down while the results are exported
    node = make_node(
        ForwardingPipeline,
        endpoints=[peer.endpoint()],
        export_retries=0,
        outbox_retry_interval_s=600,
    )
    web = web_for(node)
    storescu(node.port, write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct"))
    wait_for(lambda: node.outbox.items() and node.counters.rounds_succeeded, 30, "an item")
    [item] = node.outbox.items()
    wait_for(lambda: last_error(item), 30, "the failed attempt to be recorded")
    with web.client() as client:
        [shown] = client.get("/api/outbox").json()["items"]
        assert shown["name"] == item.name and shown["files"] == 2
        assert shown["destination"] == peer.endpoint()
        assert peer.endpoint().split("@")[0] in shown["last_error"]  # why it is waiting
        assert item.name in client.get("/outbox").text
        assert client.post("/outbox/no-such-item/resend").status_code == 404
        peer.start()
        try:
            response = client.post(f"/outbox/{item.name}/resend", headers=JSON)
            assert response.status_code == 200 and response.json()["ok"]
            wait_for(lambda: len(peer.files()) == 2, 30, "the re-sent instances")
            wait_for(lambda: not node.outbox.items(), 30, "an empty outbox")
        finally:
            peer.stop()
        assert "The outbox is empty" in client.get("/outbox").text


def test_re_sending_needs_a_node_in_the_process(web_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    item = data / "outbox" / "round-output-0"
    item.mkdir(parents=True)
    (item / "destination.json").write_text(
        json.dumps({"kind": "dicom", "ip": "127.0.0.1", "port": 11112, "ae_title": "PACS"})
    )
    (item / "1.2.3.dcm").write_bytes(b"x" * 10)
    web = web_for(settings=build_settings(data_directory=data))
    with web.client() as client:
        [shown] = client.get("/api/outbox").json()["items"]
        assert shown["destination"] == "PACS@127.0.0.1:11112" and shown["bytes"] == 10
        response = client.post(f"/outbox/{item.name}/resend", headers=JSON)
    assert response.status_code == 409


def test_the_archive_is_listed_a_page_at_a_time(web_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for index in range(5):
        folder = tmp_path / f"study-{index}"
        write_series(make_ct_series(1, rows=8, columns=8, patient_id=f"P{index}"), folder)
        archive_series(input_dir=str(folder), datastore=archive(tmp_path), thumbnail=False)
    settings = build_settings(data_directory=tmp_path / "data", archive_datastore=archive(tmp_path))
    web = web_for(settings=settings)
    with web.client() as client:
        first = client.get("/api/archive/studies", params={"limit": 2}).json()
        last = client.get("/api/archive/studies", params={"limit": 2, "offset": 4}).json()
        page = client.get("/archive", params={"limit": 2, "offset": 2}).text
        assert client.get("/archive", params={"offset": -1}).status_code == 400
        assert client.get("/api/archive/studies", params={"limit": 0}).status_code == 400
    assert first["total"] == 5 and len(first["studies"]) == 2 and len(last["studies"]) == 1
    every = [s["uid"] for s in first["studies"]] + [s["uid"] for s in last["studies"]]
    assert len(set(every)) == 3
    assert "Studies 3\u20134 of 5" in page and 'id="previous"' in page and 'id="next"' in page
