"""The dashboard's pages, JSON and actions over HTTP, with a real node and queue."""

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_pipelines import (
    UNDECODABLE_UID,
    CTAndMRPipeline,
    LeakyPipeline,
    RaisingPipeline,
    TalkativePipeline,
    UndecodablePipeline,
)

from dicomflow.dicom.factory import make_ct_series, write_series
from dicomflow.dicom.keys import value_key
from dicomflow.queue.backend import open_backend
from dicomflow.queue.job import Job, JobStatus
from dicomflow.settings import build_settings
from dicomflow.web.pages.jobs import LOG_WITHHELD
from support import StoreSCPPeer, storescu, wait_for

HOSTILE = "<script>alert(1)</script>"
PAGES = ["/", "/patients", "/jobs", "/services", "/outbox", "/archive"]
API = ["/api/overview", "/api/patients", "/api/jobs", "/api/services", "/api/outbox"]
ACTIONS = ["/jobs/abc/retry", "/jobs/abc/cancel", "/outbox/item-0/resend"]
NOOP = "dicomflow.queue.function:check_function_name"


@pytest.fixture
def web(tmp_path: Path, web_for):  # type: ignore[no-untyped-def]
    """A dashboard over a data directory, with no node in the process."""
    return web_for(settings=build_settings(data_directory=tmp_path / "data"))


def enqueue(web, **fields) -> Job:  # type: ignore[no-untyped-def]
    backend = open_backend(web.settings.resolved_queue_url())
    try:
        return backend.enqueue(Job(function=NOOP, **fields))
    finally:
        backend.close()


@pytest.mark.parametrize("path", PAGES + API)
def test_every_page_and_its_json_answers(web, path: str) -> None:  # type: ignore[no-untyped-def]
    with web.client() as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    if path.startswith("/api/"):
        assert isinstance(response.json(), dict)
    else:
        assert "<nav>" in response.text


@pytest.mark.parametrize("path", PAGES + API + ["/jobs/abc", "/api/jobs/abc"])
def test_pages_need_authentication(web, path: str) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        assert client.get(path).status_code == 401


@pytest.mark.parametrize("path", ACTIONS)
def test_actions_need_authentication(web, path: str) -> None:  # type: ignore[no-untyped-def]
    with web.client(authenticated=False) as client:
        assert client.post(path).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/bad!id"),
        ("GET", "/api/jobs/" + "x" * 129),
        ("POST", "/jobs/bad!id/retry"),
        ("POST", "/jobs/bad.id/cancel"),
        ("GET", "/jobs?status=exploded"),
        ("GET", "/api/jobs?limit=0"),
        ("POST", "/outbox/..item/resend"),
        ("POST", "/outbox/.hidden/resend"),
        ("POST", "/outbox/a%2F..%2Fb/resend"),
        ("GET", "/archive/studies/not-a-uid"),
        ("GET", "/archive/studies/1.2.3/series/1.02"),
        ("GET", "/api/archive/studies/1.2.3/series/..%2F..%2Fetc"),
        ("POST", "/archive/studies/1.2.3/series/x/unlock"),
    ],
)
def test_bad_parameters_get_400(web, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    with web.client() as client:
        response = client.request(method, path)
    assert response.status_code in (400, 404), response.text
    if "%2F" not in path:
        assert response.status_code == 400


def test_unknown_job_is_404(web) -> None:  # type: ignore[no-untyped-def]
    with web.client() as client:
        assert client.get("/jobs/abc").status_code == 404
        assert client.post("/jobs/abc/retry").status_code == 404


def test_jobs_are_listed_filtered_and_escaped(web) -> None:  # type: ignore[no-untyped-def]
    hostile = enqueue(web, name=HOSTILE, kwargs={"note": HOSTILE}, meta={"service": "svc-a"})
    archive = enqueue(web, name="archive", meta={"kind": "archive"})
    with web.client() as client:
        page = client.get("/jobs").text
        assert HOSTILE not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert hostile.id in page and archive.id in page

        def listed(query: str) -> set[str]:
            return {row["id"] for row in client.get(f"/api/jobs?{query}").json()["jobs"]}

        assert listed("") == {hostile.id, archive.id}
        assert listed("service=svc-a") == {hostile.id}
        assert listed("kind=archive") == {archive.id}
        assert listed("status=queued") == {hostile.id, archive.id}
        assert listed("status=failed") == set()
        assert listed("pipeline=archive") == set()
        detail = client.get(f"/jobs/{hostile.id}").text
        assert HOSTILE not in detail
        assert "&lt;script&gt;" in detail
        assert client.get(f"/api/jobs/{hostile.id}").json()["kwargs"] == json.dumps(
            {"note": HOSTILE}, indent=2
        )


def test_cancel_and_retry_by_form_show_a_flash_message(web) -> None:  # type: ignore[no-untyped-def]
    job = enqueue(web, name="waiting")
    with web.client() as client:
        response = client.post(f"/jobs/{job.id}/cancel", headers={"referer": f"{web.url}/jobs"})
        assert response.status_code == 303
        assert response.headers["location"] == "/jobs"
        page = client.get("/jobs").text
        assert re.search(r'class="flash ok"[^>]*>Job \w+ \(&#34;waiting&#34;\) is canceled', page)
        assert "is canceled" not in client.get("/jobs").text  # shown once
        assert client.get(f"/api/jobs/{job.id}").json()["status"] == "canceled"

        again = client.post(f"/jobs/{job.id}/cancel", headers={"accept": "application/json"})
        assert again.status_code == 409
        assert "cannot be canceled" in again.json()["message"]

        retried = client.post(f"/jobs/{job.id}/retry", headers={"accept": "application/json"})
        assert retried.status_code == 200
        assert retried.json()["job"]["status"] == "queued"
        assert client.post(f"/jobs/{job.id}/retry").status_code == 303


def test_a_failed_round_shows_its_error_and_log_and_can_be_retried(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path
):
    node = make_node(RaisingPipeline)
    web = web_for(node)
    storescu(node.port, write_series(make_ct_series(2, rows=8, columns=8), tmp_path / "ct"))
    wait_for(lambda: node.counters.rounds_failed == 1, 30, "the round to fail")
    with web.client() as client:
        [row] = client.get("/api/jobs?status=failed&pipeline=RaisingPipeline").json()["jobs"]
        assert row["kind"] == "pipeline"
        assert "segmentation model exploded" in row["error"]
        assert row["can_retry"] and not row["can_cancel"]
        page = client.get(f"/jobs/{row['id']}").text
        assert "ValueError: segmentation model exploded" in page
        assert "&lt;b&gt;hostile log line&lt;/b&gt;" in page
        assert "<b>hostile" not in page
        response = client.post(f"/jobs/{row['id']}/retry", headers={"accept": "application/json"})
        assert response.status_code == 200, response.text
        assert response.json()["ok"]
        wait_for(lambda: node.counters.rounds_failed == 2, 30, "the retried round to fail")
        assert len(list((tmp_path / "data" / "failed").iterdir())) == 1
        assert client.get(f"/api/jobs/{row['id']}").json()["status"] == "failed"


def send_ct(port: int, folder: Path, **identity: str) -> None:
    series = make_ct_series(2, rows=8, columns=8, **identity)
    storescu(port, write_series(series, folder))


@pytest.mark.parametrize("show", [False, True])
def test_patients_waiting_show_input_states_and_no_identifiers_by_default(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path, show: bool
):
    node = make_node(CTAndMRPipeline, show_patient_identifiers=show)
    web = web_for(node)
    send_ct(node.port, tmp_path / "ct", patient_name=HOSTILE, patient_id="SECRET-ID-42")
    wait_for(lambda: node.collector.patients(), 30, "the patient to wait")
    with web.client() as client:
        [patient] = client.get("/api/patients").json()["patients"]
        page = client.get("/patients").text
    states = {state["name"]: state for state in patient["inputs"]}
    assert states["ct"]["instances"] == 2 and states["ct"]["validates"]
    assert states["mr"]["instances"] == 0 and not states["mr"]["validates"]
    assert "Modality = MR" in states["mr"]["needs"]
    assert patient["last_arrival"] and not patient["complete"]
    assert patient["key"] in page
    assert HOSTILE not in page
    if show:
        assert patient["identifiers"]["PatientID"] == "SECRET-ID-42"
        assert "SECRET-ID-42" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    else:
        assert patient["identifiers"] == {}
        assert "SECRET-ID-42" not in page
        assert "alert(1)" not in page


def test_overview_counts_what_the_node_did(make_node, web_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = make_node(CTAndMRPipeline)
    web = web_for(node)
    send_ct(node.port, tmp_path / "ct")
    wait_for(lambda: node.counters.received == 2, 30, "the instances")
    with web.client() as client:
        overview = client.get("/api/overview").json()
        page = client.get("/").text
    assert overview["counters"]["received"] == 2
    assert overview["patients"] == 1
    assert overview["journal"]["writable"] and overview["journal"]["problem"] == ""
    assert "bytes journaled, not yet in the spool" in page
    assert set(overview["queue"]) == {s.value for s in JobStatus if not s.is_terminal} | {"failed"}
    assert "CTAndMRPipeline" in page


@pytest.mark.parametrize("show", [False, True])
def test_identifying_values_in_job_arguments_are_hashed_by_default(  # type: ignore[no-untyped-def]
    web_for, tmp_path: Path, show: bool
):
    settings = build_settings(data_directory=tmp_path / "data", show_patient_identifiers=show)
    web = web_for(settings=settings)
    headers = {"PatientName": "Doe^Jane", "00100020": "ID-9", "Modality": "CT"}
    job = enqueue(web, name="measure", kwargs={"headers": headers}, meta={"service": "svc"})
    with web.client() as client:
        page = client.get(f"/jobs/{job.id}").text
        arguments = client.get(f"/api/jobs/{job.id}").json()["kwargs"]
    for text in (page, arguments):
        assert "CT" in text
        assert ("Doe^Jane" in text) is show
        assert ("ID-9" in text) is show
        assert ("hidden; hash" in text) is not show


def test_without_a_node_the_spool_folder_is_counted(web) -> None:  # type: ignore[no-untyped-def]
    key = value_key("SECRET-ID-42")
    folder = web.settings.data_directory / "spool" / "incoming" / key
    folder.mkdir(parents=True)
    for uid in ("1.2.3", "1.2.4"):
        (folder / f"{uid}.dcm").write_bytes(b"DICM")
    with web.client() as client:
        [patient] = client.get("/api/patients").json()["patients"]
        page = client.get("/patients").text
    assert patient["key"] == key[:12] and patient["instances"] == 2
    assert patient["last_arrival"]
    assert "No node runs in this process" in page


@pytest.mark.parametrize("show", [False, True])
def test_a_jobs_log_and_error_hide_its_patients_identifiers_by_default(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path, show: bool
):
    node = make_node(LeakyPipeline, show_patient_identifiers=show)
    web = web_for(node)
    series = make_ct_series(1, rows=8, columns=8, patient_name="Curie^Marie", patient_id="PX-31337")
    series[0].PatientBirthDate = "18671107"
    storescu(node.port, write_series(series, tmp_path / "ct"))
    wait_for(lambda: node.counters.rounds_failed == 1, 30, "the round to fail")
    with web.client() as client:
        [row] = client.get("/api/jobs?status=failed").json()["jobs"]
        detail = client.get(f"/api/jobs/{row['id']}").json()
        page = client.get(f"/jobs/{row['id']}").text
    for secret in ("Curie^Marie", "PX-31337", "18671107", "Curie"):
        assert (secret in detail["log_tail"]) is show, secret
        assert (secret in page) is show, secret
    for text in (row["error"], detail["error"], detail["full_error"]):
        assert "no model for patient" in text
        assert ("PX-31337" in text) is show
    assert ("[hidden]" in detail["log_tail"]) is not show


@pytest.mark.parametrize("show", [False, True])
def test_the_log_of_a_round_whose_instances_are_gone_is_withheld_by_default(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path, show: bool
):
    node = make_node(TalkativePipeline, show_patient_identifiers=show)
    web = web_for(node)
    series = make_ct_series(1, rows=8, columns=8, patient_name="Curie^Marie")
    storescu(node.port, write_series(series, tmp_path / "ct"))
    wait_for(lambda: node.counters.rounds_succeeded == 1, 30, "the round")
    with web.client() as client:
        [row] = client.get("/api/jobs?status=finished").json()["jobs"]
        log = client.get(f"/api/jobs/{row['id']}").json()["log_tail"]
    if show:
        assert "processing Curie^Marie" in log
    else:
        assert log == LOG_WITHHELD


@pytest.fixture
def uncompressed_storescp(tmp_path: Path) -> Iterator[StoreSCPPeer]:
    """storescp with its default options: uncompressed transfer syntaxes only."""
    peer = StoreSCPPeer(tmp_path / "pacs", options=())
    yield peer
    peer.stop()


def test_a_result_no_retry_would_send_is_shown_set_aside_with_its_reason(  # type: ignore[no-untyped-def]
    make_node, web_for, tmp_path: Path, uncompressed_storescp: StoreSCPPeer
) -> None:
    node = make_node(UndecodablePipeline, endpoints=[uncompressed_storescp.endpoint()])
    web = web_for(node)
    send_ct(node.port, tmp_path / "ct", patient_id="SETASIDE42")
    aside = tmp_path / "data" / "outbox-unsendable"
    wait_for(lambda: any(aside.glob("*/reasons.json")), 60, "the result to be set aside")
    [folder] = aside.iterdir()
    with web.client() as client:
        listed = client.get("/api/outbox").json()
        page = client.get("/outbox").text
    [item] = listed["set_aside"]
    assert item["name"] == folder.name and item["files"] == 1
    [entry] = item["reasons"]
    assert UNDECODABLE_UID in entry["file"]
    assert "cannot be decoded" in entry["reason"] and "JPEG 2000" in entry["reason"]
    assert listed["items"] == [], "nothing is left to retry"
    assert "Set aside (will not be retried)" in page
    assert folder.name in page and UNDECODABLE_UID in page
    assert html.escape(entry["reason"], quote=False) in page


@pytest.mark.parametrize("show", [False, True])
def test_set_aside_reasons_hide_their_patients_identifiers_by_default(  # type: ignore[no-untyped-def]
    web_for, tmp_path: Path, show: bool
) -> None:
    data = tmp_path / "data"
    folder = data / "outbox-unsendable" / "round-1"
    [path] = write_series(make_ct_series(1, rows=8, columns=8, patient_id="SECRET42"), folder)
    reasons = {path.name: f"PACS@127.0.0.1:104: patient SECRET42 {HOSTILE}"}
    (folder / "reasons.json").write_text(json.dumps(reasons))
    web = web_for(settings=build_settings(data_directory=data, show_patient_identifiers=show))
    with web.client() as client:
        [item] = client.get("/api/outbox").json()["set_aside"]
        page = client.get("/outbox").text
    assert ("SECRET42" in item["reasons"][0]["reason"]) is show
    assert ("SECRET42" in page) is show
    assert HOSTILE not in page and "alert(1)" in page
