"""The dashboard in a real browser: Debian's headless Chromium, driven by Playwright.

Logs in through the form, watches a running job finish without a reload, retries a
failed job and sees it run again, and takes a screenshot that must not be blank.
"""

import re
from pathlib import Path

import av
from playwright.sync_api import Browser, Page, expect
from web_pipelines import BrowserPipeline

from dicomflow.dicom.factory import make_ct_series, write_series
from support import storescu, wait_for

TIMEOUT_MS = 15_000
MIN_SCREENSHOT_BYTES = 5_000


def send(port: int, folder: Path, patient_id: str) -> None:
    series = make_ct_series(1, rows=8, columns=8, patient_id=patient_id)
    storescu(port, write_series(series, folder))


def job_of(web, patient_count: int) -> str:  # type: ignore[no-untyped-def]
    """The id of the newest job, once there are ``patient_count`` of them."""
    with web.client() as client:
        wait_for(
            lambda: len(client.get("/api/jobs").json()["jobs"]) == patient_count, 30, "the job"
        )
        return str(client.get("/api/jobs").json()["jobs"][0]["id"])


def status_of(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-job-id="{job_id}"] [data-field="status"]')


def test_jobs_page_follows_a_running_job_and_retries_a_failed_one(  # type: ignore[no-untyped-def]
    browser: Browser, make_node, web_for, tmp_path: Path
):
    node = make_node(BrowserPipeline)
    web = web_for(node)
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.set_default_timeout(TIMEOUT_MS)

    page.goto(f"{web.url}/jobs")
    page.fill('input[name="password"]', web.token)
    page.click("#login")
    expect(page.locator("h1")).to_have_text("Jobs")
    page.evaluate("window.notReloaded = true")

    send(node.port, tmp_path / "plain", "PLAIN-1")
    plain = job_of(web, 1)
    expect(status_of(page, plain)).to_have_text("started")
    expect(status_of(page, plain)).to_have_text("finished")

    send(node.port, tmp_path / "flaky", "FLAKY-1")
    flaky = job_of(web, 2)
    expect(status_of(page, flaky)).to_have_text("failed")
    page.locator(f'tr[data-job-id="{flaky}"] form.retry button').click()
    expect(page.locator("#flash")).to_contain_text("is queued again")
    expect(status_of(page, flaky)).to_have_text(re.compile("queued|started"))
    expect(status_of(page, flaky)).to_have_text("finished")
    wait_for(lambda: node.counters.rounds_succeeded == 2, 10, "the retried round")
    assert page.evaluate("window.notReloaded") is True

    screenshot = tmp_path / "jobs.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > MIN_SCREENSHOT_BYTES
    with av.open(str(screenshot)) as container:
        pixels = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert pixels.std() > 5, "the screenshot is blank"
