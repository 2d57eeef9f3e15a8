"""Every dashboard page in headless Chromium, on a phone (390x844) and a laptop
(1280x800): never wider than the screen, the navigation in reach, and no script,
style or image blocked by the Content-Security-Policy."""

from pathlib import Path

import pytest
from dashboard_pages import PopulatedWeb, populate
from playwright.sync_api import Browser, Page, expect
from web_support import TOKEN

TIMEOUT_MS = 15_000
VIEWPORTS = {"phone": (390, 844), "laptop": (1280, 800)}
NAVIGATION = ["Overview", "Patients", "Jobs", "Services", "Outbox", "Archive"]

IMAGES_SHOWN = "() => [...document.images].every((image) => image.complete)"
# records what the Content-Security-Policy blocks, before any script of the page runs
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(event.violatedDirective + " " + event.blockedURI);
});
"""


@pytest.fixture
def populated(tmp_path: Path, web_for) -> PopulatedWeb:  # type: ignore[no-untyped-def]
    return populate(tmp_path, web_for)


def problems_of(page: Page, path: str) -> list[str]:
    """What is wrong with the page shown: too wide, navigation out of reach, CSP."""
    problems: list[str] = []
    width = page.evaluate("document.documentElement.scrollWidth")
    screen = page.evaluate("window.innerWidth")
    if width > screen:
        problems.append(f"{path}: {width} px wide on a {screen} px screen")
    for label in NAVIGATION if page.locator("header nav").count() else []:
        box = page.locator("header nav a", has_text=label).bounding_box()
        if box is None or box["x"] < 0 or box["x"] + box["width"] > screen:
            problems.append(f"{path}: the {label} link is out of reach ({box})")
    blocked = page.evaluate("window.cspViolations")
    problems += [f"{path}: CSP blocked {violation}" for violation in blocked]
    return problems


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_fits_the_screen_and_runs_under_the_csp(  # type: ignore[no-untyped-def]
    browser: Browser, populated: PopulatedWeb, viewport: str
):
    width, height = VIEWPORTS[viewport]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(WATCH_CSP)
    console: list[str] = []
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda message: console.append(message.text))
    base = populated.web.url

    page.goto(f"{base}/login")
    problems = problems_of(page, "/login")
    page.fill('input[name="password"]', TOKEN)
    page.click("#login")
    expect(page.locator("h1")).to_have_text("Overview")
    for path in populated.pages:
        page.goto(f"{base}{path}")
        page.wait_for_function(IMAGES_SHOWN)
        problems += problems_of(page, path)
    problems += [text for text in console if "Content Security Policy" in text]
    context.close()
    assert not problems, "\n".join(problems)
