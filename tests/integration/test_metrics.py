"""/metrics: Prometheus text format summed over every process, scraped and parsed with
prometheus_client's own parser."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.integration.conftest import (
    MODES,
    PREFORK,
    ROOT,
    Server,
    ServerFactory,
    exchange,
    parse_responses,
)
from tests.integration.test_master import wait_for, wait_workers

APP = ("--app", "tests.apps.testapp:app")


def scrape(server: Server, **headers: str) -> tuple[int, dict[tuple[str, tuple[Any, ...]], float]]:
    status, _, body = server.get("/metrics", **headers)
    if status != 200:
        return status, {}
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return status, samples


def value(samples: dict[tuple[str, tuple[Any, ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_summed_over_the_workers(server_factory: ServerFactory, tmp_path: Path) -> None:
    stale = tmp_path / "data" / "metrics" / "999999999"  # a server that no longer runs
    stale.mkdir(parents=True)
    (stale / "counter_4242.db").write_bytes(b"left by an earlier run")
    server = server_factory.start(
        *APP, "--workers", "2", "--max-cron-threads", "1", "--limit-request", "15"
    )
    wait_workers(server, 2)
    assert not stale.exists()  # wiped at start
    assert (tmp_path / "data" / "metrics" / str(server.proc.pid)).is_dir()
    pids = set()
    for _ in range(40):
        status, _, body = server.get("/echo")
        assert status == 200
        pids.add(body)
    assert server.get("/error")[0] == 500
    server.wait_log("exited: request-limit")
    # Workers write their tallies once a second.
    wait_for(
        lambda: (
            value(scrape(server)[1], "prefork_http_requests_total", status="200") >= 40
            and value(scrape(server)[1], "prefork_http_requests_total", status="500") == 1
        )
    )
    _, samples = scrape(server)
    assert value(samples, "prefork_http_requests_total", status="500") == 1
    assert value(samples, "prefork_http_request_duration_seconds_count") >= 41
    assert value(samples, "prefork_worker_exits_total", role="http", reason="request-limit") >= 1
    wait_for(lambda: value(scrape(server)[1], "prefork_rss_bytes", role="http") > 0)
    _, samples = scrape(server)
    for role in ("master", "http", "cron", "realtime"):
        assert value(samples, "prefork_rss_bytes", role=role) > 10 << 20, role
    result = subprocess.run(
        [PREFORK, "cron", "run", "prefork.session_gc"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: (
            value(
                scrape(server)[1], "prefork_cron_runs_total", job="prefork.session_gc", status="ok"
            )
            == 1
        ),
        30,
    )


# What the HTTP engine refuses before any application runs, one request per status.
REFUSALS = {
    400: b"GET /echo HTTP/1.1\r\n\r\n",  # no Host
    413: b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n",
    414: b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    431: b"GET /echo HTTP/1.1\r\nHost: t\r\n" + b"X: a\r\n" * 11 + b"\r\n",
    408: b"GET /echo HTTP/1.1\r\nHost: t\r\n",  # the head never ends
}


@pytest.mark.parametrize("mode", list(MODES))
def test_refused_requests_are_counted_by_status(server_factory: ServerFactory, mode: str) -> None:
    """prefork_http_refused counts, by status, the requests the parser and the limits
    refused; prefork_http_requests (the application's answers) does not count them."""
    server = server_factory.start(
        *APP,
        *MODES[mode],
        "--max-cron-threads",
        "0",
        "--limit-request-line",
        "256",
        "--limit-request-fields",
        "10",
        "--limit-request-body",
        "1000",
        "--http-header-timeout",
        "1",
    )
    for status, raw in REFUSALS.items():
        for _ in range(2):
            ((got, _, _),) = parse_responses(exchange(server, raw, half_close=False))
            assert got == status
    assert server.get("/echo")[0] == 200
    expected = {str(status): 2.0 for status in REFUSALS}

    def refused() -> dict[str, float]:
        samples = scrape(server)[1]
        return {
            status: value(samples, "prefork_http_refused_total", status=status)
            for status in expected
        }

    wait_for(lambda: refused() == expected, message=f"refused: {refused()}")
    wait_for(lambda: value(scrape(server)[1], "prefork_http_requests_total", status="200") > 0)
    samples = scrape(server)[1]
    for refusal in expected:
        assert value(samples, "prefork_http_requests_total", status=refusal) == 0


def test_websockets_and_bus_are_counted(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--max-cron-threads", "0")
    url = f"ws://127.0.0.1:{server.realtime_port}/websocket"
    deadline = time.monotonic() + 15
    while True:
        try:
            client = connect(url, open_timeout=5)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    with client:
        wait_for(lambda: value(scrape(server)[1], "prefork_websockets") == 1)
        before = value(scrape(server)[1], "prefork_bus_messages_total")
        subprocess.run(
            [PREFORK, "bus", "send", "m", '{"a": 1}'],
            check=True,
            capture_output=True,
            cwd=ROOT,
            timeout=60,
        )
        wait_for(lambda: value(scrape(server)[1], "prefork_bus_messages_total") > before)
    wait_for(lambda: value(scrape(server)[1], "prefork_websockets") == 0)


def test_access_is_restricted_by_metrics_allow(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        *APP,
        "--workers",
        "1",
        "--max-cron-threads",
        "0",
        "--metrics-allow",
        "10.0.0.0/8",
        "--proxy-mode",
    )
    assert scrape(server)[0] == 403
    status, samples = scrape(server, **{"X-Forwarded-For": "10.1.2.3"})
    assert status == 200 and samples


def test_metrics_off_counts_nothing(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory.start(*APP, "--metrics-allow", "")
    assert server.get("/echo")[0] == 200
    status, _, body = server.get("/metrics")  # the application's own answer (an echo)
    assert status == 200 and b"prefork_http" not in body and b'"path": "/metrics"' in body
    assert not (tmp_path / "data" / "metrics").exists()
