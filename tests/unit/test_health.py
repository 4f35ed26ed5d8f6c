"""The health monitor in-process: limit kills raise their alert with the last traceback."""

from __future__ import annotations

import time

from prefork.servers.exits import ExitRecord
from prefork.servers.health import HealthMonitor


def test_limit_kills_and_the_last_traceback() -> None:
    monitor = HealthMonitor(window=60, crashes=2, limit_kills=2)
    now = time.time()
    hard = ExitRecord(1, "http worker #1", "memory-hard", "RSS 900 MiB > limit 800 MiB",
                      "GET /big HTTP/1.1", at=now)
    assert monitor.record(hard) == []
    raised = monitor.record(ExitRecord(2, "http worker #2", "real-time", "request running",
                                       "GET /slow HTTP/1.1", at=now + 1))
    assert [event for event, _ in raised] == ["raised"]
    assert raised[0][1].kind == "limit-kills"
    boot = ExitRecord(3, "http worker #1", "boot-failed", "ImportError: x", "",
                      "Traceback (most recent call last):\nImportError: x", at=now)
    monitor.record(boot)
    (event, alert), = monitor.record(ExitRecord(4, "http worker #1", "crash", "exit code 1",
                                                "", at=now + 2))
    assert event == "raised" and alert.kind == "crash-loop"
    assert alert.traceback.startswith("Traceback")
    assert monitor.record(ExitRecord(5, "http worker #1", "stopped", "", "", at=now)) == []
    assert {a.kind for _, a in monitor.check(now + 30)} == set()  # still in the window
    assert {a.kind for _, a in monitor.check(now + 62)} == {"crash-loop", "limit-kills"}
    assert monitor.active == {}
