"""The demo page in a real headless Chromium: two tabs see each other's chat messages,
posted through an HTTP worker and delivered through the realtime process; the scheduled
job's message from a cron worker; the slow report that limit_time_cpu stops."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import MODES, PREFORK, ROOT, Server, ServerFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@contextmanager
def demo_page(server: Server) -> Iterator[Any]:
    """The demo page in a new Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/")
            yield page
        finally:
            browser.close()


@pytest.mark.parametrize("mode", list(MODES))
def test_two_tabs_chat_live(server_factory: ServerFactory, tmp_path: Path, mode: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    server: Server = server_factory.start("--max-cron-threads", "0", *MODES[mode])
    url = f"http://127.0.0.1:{server.port}/"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
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
            expect(first.locator("#chat-log p").last).to_contain_text(
                "grace: and back", timeout=10000
            )
            posted_by = int(re.findall(r"http pid (\d+)", line.inner_text())[0])
            assert posted_by != os.getpid()
            first.screenshot(path=str(tmp_path / f"chat-{mode}.png"))
        finally:
            browser.close()


def test_sign_in_on_the_demo_page_survives_other_workers(server_factory: ServerFactory) -> None:
    from playwright.sync_api import expect

    from tests.integration.test_master import wait_workers
    from tests.integration.test_sessions import served_pids_of_page

    server: Server = server_factory.start("--max-cron-threads", "0", "--workers", "4")
    wait_workers(server, 4)
    with demo_page(server) as page:
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


def test_the_demo_job_posts_the_time_to_the_chat(
    fresh_database: str, server_factory: ServerFactory, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from tests.integration.test_cron import eventually, query

    server: Server = server_factory.start(
        "--workers", "2", "--max-cron-threads", "1", "--db-uri", fresh_database
    )
    eventually(
        lambda: query(
            fresh_database, "SELECT 1 FROM prefork.cron_job WHERE name = 'demo.heartbeat'"
        )
    )
    with demo_page(server) as page:
        expect(page.locator("#chat-status")).to_have_text("connected", timeout=15000)
        triggered = subprocess.run(
            [PREFORK, "cron", "run", "demo.heartbeat", "--db-uri", fresh_database],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        line = page.locator("#chat-log p.cron").first
        expect(line).to_contain_text("cron: it is", timeout=20000)
        posted = re.fullmatch(
            r"cron: it is \d\d:\d\d:\d\d UTC "
            r"\(posted by cron worker pid (\d+)\)",
            line.inner_text(),
        )
        assert posted, line.inner_text()
        poster = psutil.Process(int(posted.group(1)))
        assert poster.ppid() == server.proc.pid and "cron worker" in poster.cmdline()[0]
        page.screenshot(path=str(tmp_path / "cron-message.png"))


def test_the_slow_report_is_stopped_by_the_cpu_limit(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """One worker: the stopped report shows the limit's error page, and the pid that serves
    the next request is its replacement (one, not one per resend by the browser)."""
    from playwright.sync_api import expect

    from tests.integration.test_master import wait_workers

    server: Server = server_factory.start(
        "--workers", "1", "--max-cron-threads", "0", "--limit-time-cpu", "2"
    )
    wait_workers(server, 1)
    with demo_page(server) as page:
        expect(page.locator("#report-explained")).to_contain_text("limit_time_cpu (2 s here)")
        before = int(re.findall(r"pid (\d+)", page.inner_text("#served-by"))[0])
        page.click("#report-button")
        expect(page.locator("#report-worker")).to_contain_text("served by pid", timeout=60000)
        result = page.inner_text("#report-result")
        assert result.startswith("after ") and "HTTP 504 Gateway Timeout" in result, result
        assert "more than 2 s of CPU time (limit_time_cpu)" in result, result
        after = int(re.findall(r"served by pid (\d+)", page.inner_text("#report-worker"))[0])
        assert after != before, "the worker that ran the report still serves"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert server.log().count("exited: cpu-time, CPU time above limit 2s") == 1
    assert not psutil.pid_exists(before) or psutil.Process(before).status() == "zombie"


def test_the_slow_report_finishes_where_no_cpu_limit_applies(server_factory: ServerFactory) -> None:
    """Threaded mode, `prefork run`'s default: the page says so, the report completes."""
    from playwright.sync_api import expect

    server: Server = server_factory.start("--max-cron-threads", "0")
    with demo_page(server) as page:
        expect(page.locator("#report-explained")).to_contain_text(
            "prefork run --workers 2 --limit-time-cpu 5"
        )
        page.click("#report-button")
        expect(page.locator("#report-worker")).to_contain_text("served by pid", timeout=60000)
        result = page.inner_text("#report-result")
        assert "HTTP 200" in result and "no CPU limit applies" in result, result
        assert f"pid {server.proc.pid}" in page.inner_text("#report-worker")


def test_the_chat_works_with_a_stale_session_cookie(server_factory: ServerFactory) -> None:
    """A session_id cookie that no store knows (a logged-out or expired session, a restored
    backup): the page's websocket is served as an anonymous client, not closed and
    reopened in a loop."""
    from playwright.sync_api import expect, sync_playwright

    from prefork.sessions import signing

    server: Server = server_factory.start(
        "--max-cron-threads", "0", "--workers", "1", "--session-secret", "s3cret"
    )
    stale = signing.sign("s" * 43, b"s3cret")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": "session_id", "value": stale, "domain": "127.0.0.1", "path": "/"}]
            )
            page = context.new_page()
            sockets: list[Any] = []
            page.on("websocket", lambda ws: sockets.append(ws))
            page.goto(f"http://127.0.0.1:{server.port}/")
            expect(page.locator("#chat-status")).to_have_text("connected", timeout=15000)
            page.fill("#chat-name", "stale")
            page.fill("#chat-text", "still here")
            page.click("text=Send")
            expect(page.locator("#chat-log p").last).to_contain_text(
                "stale: still here", timeout=10000
            )
            page.wait_for_timeout(3000)  # the page reconnects 0.5 s after a close
            expect(page.locator("#chat-status")).to_have_text("connected")
            assert len(sockets) == 1, [s.url for s in sockets]
            assert not sockets[0].is_closed()
        finally:
            browser.close()
