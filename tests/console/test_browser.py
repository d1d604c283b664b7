"""The console in a real browser: Debian's Chromium, headless, driven by Playwright's Python
package through `executable_path` (never `playwright install`, which downloads a browser).

The scenario of issue 17: sign in with a scim token, find a user by email, open its timeline and
see the deactivation made by the `okta` connection with its request id, open the provisioning log
and see a rejected request, sign in as an auditor and export CSV, sign out, and a revoked
token's session refused. Every page is screenshotted; with SCIMLEDGER_SCREENSHOTS=docs/screenshots
the PNGs shown in the README are refreshed (docs/console.md).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app import tenancy
from tests.console.conftest import Org
from tests.console.seed import DEACTIVATION_REQUEST_ID, seed
from tests.support import caught_up

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}


def chromium() -> str:
    """The system Chromium, or a failure that says how to install it (never a skip)."""
    found = os.environ.get("SCIMLEDGER_CHROMIUM") or shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not found:
        pytest.fail("the console's browser tests need Chromium, which is missing: install it with "
                    "`apt-get install -y chromium` (Debian, as root; `make test` does it when it can)",
                    pytrace=False)
    return found


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("SCIMLEDGER_SCREENSHOTS")
    folder = Path(target) if target else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    executable = chromium()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail("the console's browser tests need the `playwright` package: `make install`", pytrace=False)
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def test_an_admin_and_an_auditor_find_who_deactivated_whom(
    client: TestClient, org: Org, pool: asyncpg.Pool, browser: object, shots: Path
) -> None:
    seeded = await seed(client, org, pool)
    await caught_up(pool, "audit", "seal")
    base = str(client.make_url("/console/")).rstrip("/")
    context = await browser.new_context(viewport=VIEWPORT, accept_downloads=True)  # type: ignore[attr-defined]
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)  # CSP violations land here
    page.on("pageerror", lambda e: problems.append(str(e)))

    # sign in as the tenant admin with the okta scim token
    await page.goto(f"{base}/")
    assert page.url == f"{base}/sign-in"
    await page.get_by_label("Token").fill(org.scim.secret)
    await page.screenshot(path=shots / "sign-in.png")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/directory")
    assert org.scim.secret not in page.url
    assert await page.get_by_role("link", name="grace@example.com").is_visible()
    await page.screenshot(path=shots / "directory.png")

    # find a user by email, keyboard first: "/" focuses the search
    await page.keyboard.press("/")
    await page.keyboard.type("ada@example.com")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/directory?**q=ada%40example.com**")
    rows = page.locator("table.list tbody tr")
    assert await rows.count() == 1
    await page.get_by_role("link", name="ada@example.com").click()
    await page.wait_for_url(f"{base}/users/{seeded.users['ada@example.com']}")

    # its timeline: the deactivation, by the okta connection, with its request id
    deactivation = page.locator("ol.timeline > li").filter(has_text="user.deactivated")
    assert await deactivation.count() == 1
    text = await deactivation.inner_text()
    assert "okta" in text and DEACTIVATION_REQUEST_ID in text and "Okta SCIM Client" in text
    assert "127.0.0.1" in text
    diff = deactivation.locator("table.diff")
    assert "active" in await diff.inner_text() and "true" in await diff.inner_text()
    await page.screenshot(path=shots / "user-timeline.png", full_page=True)

    # a group's page, members paged
    await page.get_by_role("link", name="Engineering").click()
    await page.wait_for_url(f"{base}/groups/{seeded.group_id}")
    assert await page.locator("section[aria-labelledby=members-title] tbody tr").count() == 4
    await page.screenshot(path=shots / "group.png", full_page=True)

    # the provisioning log: the rejected duplicate push, and the Entra refusal
    await page.get_by_role("link", name="Provisioning log").click()
    await page.wait_for_url(f"{base}/provisioning")
    rejected = page.locator("table.requests tbody tr.rejected")
    assert await rejected.count() == 2
    all_rejected = await rejected.all_inner_texts()
    assert any("409" in r and "uniqueness" in r and "okta" in r for r in all_rejected), all_rejected
    assert any("400" in r and "entra-prod" in r for r in all_rejected), all_rejected
    assert await page.locator("figure.chart svg rect.bar.rejected").count() >= 1
    await page.screenshot(path=shots / "provisioning-log.png", full_page=True)

    # sign out: the session is gone, the pages ask for a sign-in again
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{base}/sign-in")
    await page.goto(f"{base}/directory")
    assert page.url == f"{base}/sign-in"

    # the auditor: who deactivated whom, and a CSV export
    await page.get_by_label("Token").fill(org.audit_secret)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/audit")
    await page.get_by_label("Event type").select_option("user.deactivated")
    await page.get_by_label("Target (id, userName or group name)").fill("ada@example.com")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**/audit?**type=user.deactivated**")
    found = page.locator("table.list tbody tr")
    assert await found.count() == 1
    row = await found.inner_text()
    assert "ada@example.com" in row and "okta" in row and DEACTIVATION_REQUEST_ID in row
    await page.screenshot(path=shots / "audit.png", full_page=True)
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await info.value
    exported = list(csv.DictReader(io.StringIO(await asyncio.to_thread(Path(await download.path()).read_text))))
    assert [(r["type"], r["targetName"], r["actorLabel"], r["actorRequestId"]) for r in exported] == [
        ("user.deactivated", "ada@example.com", "okta", DEACTIVATION_REQUEST_ID)]
    await page.get_by_role("link", name="Verify the seal").click()
    await page.wait_for_url(f"{base}/audit/seal")
    assert "holds" in await page.locator("h1").inner_text()
    await page.screenshot(path=shots / "seal.png")
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(f"{base}/sign-in")

    # a revoked token's session is refused on its next request
    await page.get_by_label("Token").fill(org.scim.secret)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/directory")
    async with pool.acquire() as conn:
        await tenancy.revoke_token(conn, org.scim.token_id)
    await page.reload()
    assert page.url == f"{base}/sign-in"
    await page.get_by_label("Token").fill(org.scim.secret)
    await page.get_by_role("button", name="Sign in").click()
    assert "not valid" in await page.get_by_role("alert").inner_text()
    await page.screenshot(path=shots / "sign-in-refused.png")

    # no CSP violation, no script error on any page (the refused sign-in's own 401 aside)
    problems = [p for p in problems if "status of 401" not in p]
    assert not problems, problems
    await context.close()
