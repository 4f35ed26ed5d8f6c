"""The health monitor in-process: limit kills raise their alert with the last traceback;
the alerts' webhook payload and the state file's list."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from prefork.config import Settings
from prefork.servers.exits import ExitReason, ExitRecord
from prefork.servers.health import Alert, Alerts, HealthMonitor


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


class Posted:
    """Stands in for the webhook's delivery thread: keeps what would be POSTed."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def send(self, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)


def test_alerts_post_each_event_and_list_the_database_last() -> None:
    alerts = Alerts(Settings(alert_window=60, alert_crashes=1))
    assert alerts.webhook is None  # alert_webhook unset
    posted = Posted()
    alerts.webhook = posted  # type: ignore[assignment]
    crash = ExitRecord(1, "http worker #1", ExitReason.CRASH, "exit code 7", "", at=time.time())
    ((event, raised),) = alerts.monitor.record(crash)
    alerts.send([(event, raised)])
    assert posted.payloads == [
        {
            "event": "raised",
            "server": socket.gethostname(),
            "master_pid": os.getpid(),
            **raised.as_dict(),
        }
    ]
    database = Alert("database-down", 1, 60, "pg_ctl exit status 1", "", 2.0)
    assert alerts.active(None) == [raised.as_dict()]
    assert alerts.active(database) == [raised.as_dict(), database.as_dict()]
