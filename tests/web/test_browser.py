"""Headless Chromium (Playwright) against the app on loopback: log in per role through the form,
navigate by keyboard and links, see a chart render, get 403/404 on out-of-scope URLs.
Screenshots land in tmp/artifacts/web/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.web.live_server import LiveServer

from .conftest import WebWorld

CHROMIUM = Path(os.environ.get("EDSIGHT_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def _login(browser: object, live: LiveServer, world: WebWorld, role: str) -> object:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    external: list[str] = []
    page.on("request", lambda r: external.append(r.url) if not r.url.startswith(live.url) else None)
    page.goto(f"{live.url}/")
    assert "/login" in page.url
    acct = world.accounts[role]
    page.get_by_label("Username").fill(acct.username)
    page.get_by_label("Password").fill(acct.password)
    code = world.totp(role)
    if code:
        page.get_by_label("Authenticator code").fill(code)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    assert "/login" not in page.url, page.content()[:500]
    page.external_requests = external  # type: ignore[attr-defined]
    return page


@pytest.mark.parametrize(
    "role", ["teacher", "counselor", "principal", "district_admin", "state_analyst", "parent"]
)
def test_role_logs_in_and_navigates(
    browser: object, live: LiveServer, world: WebWorld, artifacts: Path, role: str
) -> None:
    page = _login(browser, live, world, role)
    page.screenshot(path=str(artifacts / f"{role}-home.png"), full_page=True)  # type: ignore[attr-defined]
    # Keyboard: the first Tab reaches the skip link, which moves focus to the main content.
    page.keyboard.press("Tab")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.className") == "skip-link"  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    assert page.evaluate("document.activeElement.id") == "main"  # type: ignore[attr-defined]
    links = page.locator("nav[aria-label=Main] a")  # type: ignore[attr-defined]
    assert links.count() >= 1
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        response = page.goto(f"{live.url}{href}")  # type: ignore[attr-defined]
        assert response.status == 200, href
    assert not page.external_requests, "no request may leave loopback (vendored assets only)"  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]


def test_charts_render_and_out_of_scope_is_refused(
    browser: object, live: LiveServer, world: WebWorld, artifacts: Path
) -> None:
    page = _login(browser, live, world, "principal")
    page.goto(f"{live.url}/schools/{world.targets['school']}")  # type: ignore[attr-defined]
    chart = page.locator("svg.histogram")  # type: ignore[attr-defined]
    assert chart.count() == 1
    box = chart.bounding_box()
    assert box
    assert box["width"] > 100
    assert box["height"] > 50
    assert page.locator("svg.histogram rect").count() >= 1  # type: ignore[attr-defined]
    page.screenshot(path=str(artifacts / "principal-school.png"), full_page=True)  # type: ignore[attr-defined]
    other = page.goto(f"{live.url}/students/S99999999")  # type: ignore[attr-defined]
    assert other.status == 404
    district = page.goto(f"{live.url}/state")  # type: ignore[attr-defined]
    assert district.status == 403
    page.screenshot(path=str(artifacts / "principal-forbidden.png"))  # type: ignore[attr-defined]
    api = page.goto(f"{live.url}/api/v1/students/S99999999")  # type: ignore[attr-defined]
    assert api.status == 404
    assert "Traceback" not in page.content()
    page.context.close()  # type: ignore[attr-defined]


def test_student_profile_growth_curve(
    browser: object, live: LiveServer, world: WebWorld, artifacts: Path
) -> None:
    page = _login(browser, live, world, "parent")
    assert page.url.endswith(f"/students/{world.targets['child']}")  # type: ignore[attr-defined]
    assert page.locator("svg.line").count() >= 1  # type: ignore[attr-defined]
    title = page.locator("svg.line title").first.text_content()  # type: ignore[attr-defined]
    assert title in ("Risk over time", "Growth curve (scale scores)")
    page.screenshot(path=str(artifacts / "parent-student.png"), full_page=True)  # type: ignore[attr-defined]
    page.context.close()  # type: ignore[attr-defined]
