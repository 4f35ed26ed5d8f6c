"""The dashboard at /prefork/: its password (rate-limited, then a signed cookie) and the
page in a real headless Chromium: processes, memory chart, exits, the alert banner, cron
jobs, database and bus, on a phone-sized screen too."""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from prefork.ops.dashboard_cookie import NAME, DashboardCookie, cookie_key
from tests.integration.conftest import Server, ServerFactory, in_rounds
from tests.integration.test_demo_chat import CHROMIUM, launch_chromium
from tests.integration.test_master import get, wait_workers
from tests.unit.test_dashboard import basic, odoo_hash

# Every text and legend item of the chart, and the chart's own box, in CSS pixels; the
# series the chart was drawn from (redrawn here, between two refreshes).
CHART_LAYOUT = """async () => {
  const data = await (await fetch("api", {cache: "no-store"})).json();
  chart(data.state.memory_history);
  const box = (node) => { const r = node.getBoundingClientRect();
                          return [r.left, r.top, r.right, r.bottom]; };
  const svg = document.getElementById("chart");
  return {roles: Object.keys(data.state.memory_history), chart: box(svg),
          texts: [...svg.querySelectorAll("text")].map((t) =>
            [t.getAttribute("class") || "", t.textContent, box(t)]),
          legend: [...svg.querySelectorAll(".legend-item")].map((g) =>
            [g.textContent, box(g)])};
}"""
# The distinct colours of a PNG and the share of its pixels that are not white, decoded
# by the browser itself.
PNG_COLOURS = """async (png) => {
  const image = new Image();
  image.src = "data:image/png;base64," + png;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, image.width, image.height).data;
  const colours = new Set();
  let inked = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    colours.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    if (pixels[i] < 200 || pixels[i + 1] < 200 || pixels[i + 2] < 200) inked++;
  }
  return {colours: colours.size, inked: inked / (pixels.length / 4)};
}"""


SECRET = "dashboard-test-secret"


def sign_in(server: Server, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return server.get("/prefork/api", Authorization=basic("s3cret"), **headers)


def cookie_value(expires: int, password: str) -> str:
    key = cookie_key(SECRET.encode(), password)
    return f"{NAME}={DashboardCookie(key).value(expires)}"


def test_threaded_dashboard_limits_guesses_and_signs_in_with_a_cookie(
    server_factory: ServerFactory,
) -> None:
    server: Server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--proxy-mode",
        "--session-secret",
        SECRET,
        "--admin-passwd",
        odoo_hash("s3cret"),
    )  # threaded mode, behind a proxy
    status, headers, _ = sign_in(server, **{"X-Forwarded-Proto": "https"})
    assert status == 200 and "Secure" in headers["Set-Cookie"], headers
    cookie = headers["Set-Cookie"].split(";")[0]
    status, headers, body = server.get("/prefork/api", Cookie=cookie)  # the page's polling
    assert status == 200 and "Set-Cookie" not in headers
    assert json.loads(body)["state"]["mode"] == "threaded"
    expired = cookie_value(int(time.time()) - 1, "s3cret")
    other_password = cookie_value(int(time.time()) + 600, "old password")
    for refused in (cookie[:-2] + "xx", expired, other_password):
        assert server.get("/prefork/api", Cookie=refused)[0] == 401, refused
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    for index in range(10):
        assert server.get("/prefork/", Authorization=basic(f"guess{index}"), **attacker)[0] == 401
    status, headers, _ = sign_in(server, **attacker)  # even the right password
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 60, headers
    assert sign_in(server, **{"X-Forwarded-For": "203.0.113.6"})[0] == 200


def test_the_dashboard_needs_the_password_then_any_worker_takes_its_cookie(
    server_factory: ServerFactory,
) -> None:
    server: Server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--workers",
        "2",
        "--max-cron-threads",
        "0",
        "--admin-passwd",
        "s3cret",
    )
    url = f"http://127.0.0.1:{server.port}/prefork/api"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="prefork"'
    refused.value.close()
    wrong = urllib.request.Request(url, headers={"Authorization": basic("nope")})
    with pytest.raises(urllib.error.HTTPError) as refused_again:
        urllib.request.urlopen(wrong, timeout=10)
    assert refused_again.value.code == 401
    refused_again.value.close()
    status, headers, _ = sign_in(server)
    assert status == 200 and "Secure" not in headers["Set-Cookie"]
    assert served_by_workers(server, headers["Set-Cookie"].split(";")[0]) == 2
    off = server_factory.start("--app", "tests.apps.testapp:app")  # no admin_passwd
    assert b'"path": "/prefork/"' in off.get("/prefork/")[2]  # the application's answer


def served_by_workers(server: Server, cookie: str) -> int:
    """How many workers answered the dashboard to the cookie alone: concurrent clients,
    each connection asking its worker's pid first (keep-alive: the same worker)."""
    pids: set[int] = set()
    wrong: list[int] = []

    def client() -> None:
        for _ in range(5):
            conn = server.http(timeout=15)
            try:
                conn.request("GET", "/echo")
                pid = json.loads(conn.getresponse().read())["pid"]
                conn.request("GET", "/prefork/api", headers={"Cookie": cookie})
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and "state" in json.loads(body):
                    pids.add(pid)
                else:
                    wrong.append(response.status)
            finally:
                conn.close()

    in_rounds(client, 4, lambda: len(pids) >= 2)
    assert wrong == []
    return len(pids)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_dashboard_in_chromium(server_factory: ServerFactory, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    server: Server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--workers",
        "2",
        "--max-cron-threads",
        "1",
        "--admin-passwd",
        "s3cret",
        "--alert-crashes",
        "1",
        "--alert-window",
        "600",
    )
    wait_workers(server, 2)
    try:
        get(server, "/crash", timeout=5)  # one crash: the alert threshold here
    except Exception:
        pass
    server.wait_log("ALERT crash-loop")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(
                http_credentials={"username": "admin", "password": "s3cret"},
                viewport={"width": 390, "height": 844},
            )  # a phone
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{server.port}/prefork/")
            expect(page.locator("#mode")).to_have_text("multi-processing", timeout=10000)
            signed_in = [c for c in context.cookies() if c["name"] == NAME]
            assert [(c["path"], c["httpOnly"], c["sameSite"]) for c in signed_in] == [
                ("/prefork/", True, "Strict")
            ], signed_in
            processes = page.locator("#processes tbody")
            for role in (
                "master",
                "http worker #1",
                "http worker #2",
                "cron worker #1",
                "realtime process",
            ):
                expect(processes).to_contain_text(role)
            expect(page.locator("#alerts .alert")).to_contain_text("ALERT crash-loop")
            expect(page.locator("#exits tbody")).to_contain_text("crash")
            expect(page.locator("#cron tbody")).to_contain_text("prefork.session_gc")
            expect(page.locator("#services")).to_contain_text("database: PostgreSQL")
            expect(page.locator("#services")).to_contain_text("realtime process ready")
            expect(page.locator("#chart polyline").first).to_be_attached(timeout=10000)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, (
                "the page is wider than a phone's screen"
            )
            check_memory_chart(page.evaluate(CHART_LAYOUT))
            chart_shot = tmp_path / "memory-chart.png"
            page.locator("#chart").screenshot(path=str(chart_shot))
            drawn = page.evaluate(PNG_COLOURS, base64.b64encode(chart_shot.read_bytes()).decode())
            assert drawn["colours"] >= 5 and drawn["inked"] > 0.01, drawn  # lines, text, grid
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


def check_memory_chart(layout: dict[str, Any]) -> None:
    """MiB and time tick labels, a legend item per series, everything inside the chart and
    no two legend items on top of each other."""
    texts = layout["texts"]
    mib = [float(text) for kind, text, _ in texts if kind == "y-tick"]
    assert len(mib) >= 2 and mib[0] == 0 and mib == sorted(mib), texts
    times = [text for kind, text, _ in texts if kind == "x-tick"]
    assert times and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", t) for t in times), texts
    assert [text for kind, text, _ in texts if kind == "y-title"] == ["RSS (MiB)"]
    legend = [text for text, _ in layout["legend"]]
    assert len(legend) == len(layout["roles"]) >= 4, (legend, layout["roles"])
    for role, item in zip(layout["roles"], legend, strict=True):
        assert re.fullmatch(re.escape(role) + r" \d+\.\d MiB", item), (role, item)
    left, top, right, bottom = layout["chart"]
    boxes = [box for _, _, box in texts] + [box for _, box in layout["legend"]]
    for x0, y0, x1, y1 in boxes:
        assert x1 > x0 and y1 > y0, layout
        assert left <= x0 and x1 <= right + 0.5 and top <= y0 and y1 <= bottom + 0.5, layout
    items = [box for _, box in layout["legend"]]
    for i, (ax0, ay0, ax1, ay1) in enumerate(items):
        for bx0, by0, bx1, by1 in items[i + 1 :]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, items
