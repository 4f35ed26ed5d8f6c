"""The demo's live chat in a real headless Chromium: two tabs see each other's messages,
posted through an HTTP worker and delivered through the realtime process."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import MODES, Server

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.mark.parametrize("mode", list(MODES))
def test_two_tabs_chat_live(server_factory: type, tmp_path: Path, mode: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    server: Server = server_factory.start("--max-cron-threads", "0", *MODES[mode])
    url = f"http://127.0.0.1:{server.port}/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            first, second = browser.new_page(), browser.new_page()
            for page in (first, second):
                page.goto(url)
                expect(page.locator("#chat-status")).to_have_text("connected", timeout=15000)
            first.fill("#chat-name", "ada")
            first.fill("#chat-text", "hello from the first tab")
            first.click("text=Send")
            line = second.locator("#chat-log p").last
            expect(line).to_contain_text("ada: hello from the first tab", timeout=10000)
            second.fill("#chat-name", "grace")
            second.fill("#chat-text", "and back")
            second.press("#chat-text", "Enter")
            expect(first.locator("#chat-log p").last).to_contain_text("grace: and back",
                                                                     timeout=10000)
            posted_by = int(re.findall(r"http pid (\d+)", line.inner_text())[0])
            assert posted_by != os.getpid()
            first.screenshot(path=str(tmp_path / f"chat-{mode}.png"))
        finally:
            browser.close()


def test_sign_in_on_the_demo_page_survives_other_workers(server_factory: type) -> None:
    from playwright.sync_api import expect, sync_playwright

    from tests.test_master import wait_workers
    from tests.test_sessions import served_pids_of_page

    server: Server = server_factory.start("--max-cron-threads", "0", "--workers", "4")
    wait_workers(server, 4)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/")
            expect(page.locator("#signed-in")).to_have_text("not signed in")
            page.fill("input[name=user]", "ada")
            page.click("text=Sign in")
            expect(page.locator("#signed-in")).to_have_text("signed in as ada")
            expect(page.locator("#chat-name")).to_have_value("ada")
            cookie = next(c for c in page.context.cookies() if c["name"] == "session_id")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            pids = served_pids_of_page(server, f"session_id={cookie['value']}", "ada")
            assert len(pids) >= 2, pids
            page.click("text=Sign out")
            expect(page.locator("#signed-in")).to_have_text("not signed in")
        finally:
            browser.close()
