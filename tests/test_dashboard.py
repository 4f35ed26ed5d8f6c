"""The dashboard at /prefork/ in a real headless Chromium: processes, memory chart, exits,
the alert banner, cron jobs, database and bus, on a phone-sized screen too."""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from prefork.ops.adminpass import matches
from tests.conftest import Server
from tests.test_master import get, wait_workers

CHROMIUM = Path("/usr/bin/chromium")


def _ab64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def test_admin_passwd_plain_and_odoo_hash() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha512", b"s3cret", salt, 600)
    hashed = f"$pbkdf2-sha512$600${_ab64(salt)}${_ab64(digest)}"
    assert matches(hashed, "s3cret") and not matches(hashed, "wrong")
    assert matches("plain", "plain") and not matches("plain", "plai")
    assert not matches("", "")  # no password configured: no access


def test_the_dashboard_needs_the_password(server_factory: type) -> None:
    server: Server = server_factory.start("--app", "tests.apps.testapp:app", "--workers", "1",
                                          "--max-cron-threads", "0", "--admin-passwd", "pw")
    url = f"http://127.0.0.1:{server.port}/prefork/api"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="prefork"'
    refused.value.close()
    wrong = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()})
    with pytest.raises(urllib.error.HTTPError) as refused_again:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused_again.value.code == 401
    refused_again.value.close()
    off = server_factory.start("--app", "tests.apps.testapp:app")  # no admin_passwd
    assert b'"path": "/prefork/"' in off.get("/prefork/")[2]  # the application's answer


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_dashboard_in_chromium(server_factory: type, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    server: Server = server_factory.start(
        "--app", "tests.apps.testapp:app", "--workers", "2", "--max-cron-threads", "1",
        "--admin-passwd", "s3cret", "--alert-crashes", "1", "--alert-window", "600")
    wait_workers(server, 2)
    try:
        get(server, "/crash", timeout=5)  # one crash: the alert threshold here
    except Exception:
        pass
    server.wait_log("ALERT crash-loop")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(http_credentials={"username": "admin",
                                                            "password": "s3cret"},
                                          viewport={"width": 390, "height": 844})  # a phone
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/prefork/")
            expect(page.locator("#mode")).to_have_text("multi-processing", timeout=10000)
            processes = page.locator("#processes tbody")
            for role in ("master", "http worker #1", "http worker #2", "cron worker #1",
                         "realtime process"):
                expect(processes).to_contain_text(role)
            expect(page.locator("#alerts .alert")).to_contain_text("ALERT crash-loop")
            expect(page.locator("#exits tbody")).to_contain_text("crash")
            expect(page.locator("#cron tbody")).to_contain_text("prefork.session_gc")
            expect(page.locator("#services")).to_contain_text("database: PostgreSQL")
            expect(page.locator("#services")).to_contain_text("realtime process ready")
            expect(page.locator("#chart polyline").first).to_be_attached(timeout=10000)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, \
                "the page is wider than a phone's screen"
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
