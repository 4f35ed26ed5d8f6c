"""The health monitor in-process: limit kills raise their alert with the last traceback."""

from __future__ import annotations

import time

from prefork.servers.exits import ExitReason, ExitRecord
from prefork.servers.health import HealthMonitor


def test_limit_kills_and_the_last_traceback() -> None:
    monitor = HealthMonitor(window=60, crashes=2, limit_kills=2)
    now = time.time()
    hard = ExitRecord(
        1,
        "http worker #1",
        ExitReason.MEMORY_HARD,
        "RSS 900 MiB > limit 800 MiB",
        "GET /big HTTP/1.1",
        at=now,
    )
    assert monitor.record(hard) == []
    raised = monitor.record(
        ExitRecord(
            2,
            "http worker #2",
            ExitReason.REAL_TIME,
            "request running",
            "GET /slow HTTP/1.1",
            at=now + 1,
        )
    )
    assert [event for event, _ in raised] == ["raised"]
    assert raised[0][1].kind == "limit-kills"
    boot = ExitRecord(
        3,
        "http worker #1",
        ExitReason.BOOT_FAILED,
        "ImportError: x",
        "",
        "Traceback (most recent call last):\nImportError: x",
        at=now,
    )
    monitor.record(boot)
    crash = ExitRecord(4, "http worker #1", ExitReason.CRASH, "exit code 1", "", at=now + 2)
    ((event, alert),) = monitor.record(crash)
    assert event == "raised" and alert.kind == "crash-loop"
    assert alert.traceback.startswith("Traceback")
    assert monitor.record(ExitRecord(5, "http worker #1", ExitReason.STOPPED, "", "", at=now)) == []
    assert {a.kind for _, a in monitor.check(now + 30)} == set()  # still in the window
    assert {a.kind for _, a in monitor.check(now + 62)} == {"crash-loop", "limit-kills"}
    assert monitor.active == {}
