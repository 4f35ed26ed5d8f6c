"""A request stopped by limit_time_cpu, limit_time_real or limit_memory_hard gets a complete
error response before its worker is replaced: a browser re-sends a request whose connection
closed without one (one click on a runaway page cost a worker per attempt)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory
from tests.integration.test_demo_chat import CHROMIUM, launch_chromium
from tests.integration.test_master import APP, wait_for, wait_workers, workers_of


def request(server: Server, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = server.http(timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def status_json(server: Server, tmp_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [PREFORK, "status", "-p", "0", "--data-dir", str(tmp_path / "data"), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    state: dict[str, Any] = json.loads(out.stdout)
    return state


def limit_exits(server: Server, reason: str) -> list[str]:
    return re.findall(rf"http worker #\d \(pid (\d+)\) exited: {reason}\b", server.log())


# -- the answer itself, without a server ------------------------------------------------------


# -- real servers ---------------------------------------------------------------------------


def test_cpu_limit_answers_then_replaces_the_worker(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory.start(*APP, "--workers", "2", "--limit-time-cpu", "1")
    before = {p.pid for p in wait_workers(server, 2)}
    status, headers, body = request(server, "/burn?s=30")
    assert status == 504, body
    assert headers["connection"] == "close" and "retry-after" not in headers
    assert headers["content-type"].startswith("text/html")
    assert b"more than 1 s of CPU time (limit_time_cpu)" in body
    assert b"Traceback" not in body
    match = server.wait_log(
        r"http worker #\d \(pid (\d+)\) exited: cpu-time, CPU time above "
        r"limit 1s, request 'GET /burn\?s=30 HTTP/1\.1'"
    )
    stopped = int(match.group(1))
    assert stopped in before
    wait_for(lambda: len(pids := {p.pid for p in workers_of(server)}) == 2 and stopped not in pids)
    served_by = json.loads(request(server, "/echo")[2])["pid"]
    assert served_by != stopped
    wait_for(
        lambda: any(
            e["pid"] == stopped and e["reason"] == "cpu-time"
            for e in status_json(server, tmp_path)["exits"]
        )
    )
    assert "GET /burn?s=30 stopped: This request used more than 1 s" in server.log()


def test_real_time_limit_answers_json(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2", "--limit-time-real", "2")
    wait_workers(server, 2)
    status, headers, body = request(server, "/sleep?s=30", Accept="application/json")
    assert status == 504
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["limit"] == "limit_time_real" and error["status"] == 504
    assert "more than 2 s (limit_time_real)" in error["message"]
    server.wait_log(
        r"http worker #\d \(pid \d+\) exited: real-time, request running "
        r"2\.\d+s > limit 2s, request 'GET /sleep\?s=30 HTTP/1\.1'"
    )
    wait_workers(server, 2)
    assert "did not stop its request" not in server.log()


def test_memory_hard_limit_answers(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        *APP, "--workers", "2", "--limit-memory-soft", "100M", "--limit-memory-hard", "300M"
    )
    wait_workers(server, 2)
    status, _, body = request(server, "/mem?mb=700&keep=1")
    assert status == 503, body
    assert b"memory above 300 MiB (limit_memory_hard)" in body
    server.wait_log(
        r"exited: memory-hard, RSS [\d.]+ MiB > limit 300\.0 MiB, request "
        r"'GET /mem\?mb=700&keep=1 HTTP/1\.1'"
    )
    wait_workers(server, 2)


def test_a_response_already_begun_is_cut(server_factory: ServerFactory) -> None:
    """Headers sent: no second response can follow; the connection closes mid-body."""
    server = server_factory.start(*APP, "--workers", "1", "--limit-time-real", "2")
    wait_workers(server, 1)
    conn = server.http(timeout=30)
    conn.request("GET", "/stream?n=60&delay=0.5")
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert cut.value.partial.startswith(b"000000:")
    conn.close()
    server.wait_log(r"exited: real-time, request running")
    wait_workers(server, 1)


# A pure C loop (sum over a range) never returns to the interpreter: the signal's handler
# cannot run, so no answer is possible and the backstop ends the worker.
STUCK_IN_C = "/sum?n=100000000000"


def test_a_request_stuck_in_c_is_killed_by_the_cpu_backstop(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        *APP, "--workers", "1", "--limit-time-cpu", "1", "--limit-time-real", "0"
    )
    wait_workers(server, 1)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request(server, STUCK_IN_C)
    server.wait_log(r"exited: cpu-time, CPU time above limit 1s, request 'GET /sum", 30)
    wait_workers(server, 1)


def test_a_request_stuck_in_c_is_killed_after_the_grace(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        *APP, "--workers", "1", "--limit-time-real", "2", "--limit-time-cpu", "0"
    )
    wait_workers(server, 1)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        request(server, STUCK_IN_C)
    server.wait_log(r"did not stop its request within 3s: killing it", 30)
    server.wait_log(
        r"exited: real-time, request running [\d.]+s > limit 2s, request "
        r"'GET /sum"
    )
    wait_workers(server, 1)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"
)
def test_chromium_loads_a_runaway_page_once(server_factory: ServerFactory) -> None:
    """Before limits answered, Chromium met an empty reply and sent the GET again by
    itself: each attempt cost a worker."""
    from playwright.sync_api import Error, expect, sync_playwright

    server = server_factory.start(*APP, "--workers", "2", "--limit-time-cpu", "1")
    wait_workers(server, 2)
    failure = ""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            try:
                response = page.goto(f"http://127.0.0.1:{server.port}/burn?s=60", timeout=120_000)
            except Error as exc:  # the navigation failed: no response at all
                failure, response = str(exc), None
            else:
                expect(page.locator("body")).to_contain_text(
                    "more than 1 s of CPU time (limit_time_cpu)"
                )
        finally:
            browser.close()
    server.wait_log(r"exited: cpu-time")
    wait_workers(server, 2)
    # Any attempt the browser made came before it showed a page or gave up.
    assert len(limit_exits(server, "cpu-time")) == 1, (failure, server.log())
    assert response is not None and response.status == 504, failure
