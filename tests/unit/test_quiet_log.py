"""QuietLog: what repeats at request rate is logged once per interval, and the next line
says how many were left out."""

from __future__ import annotations

import logging
import time

import pytest

from prefork import quiet_log


def test_one_line_per_interval_then_the_count(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    quiet = quiet_log.QuietLog(logging.getLogger("test.quiet"), every=10.0)
    with caplog.at_level(logging.WARNING, "test.quiet"):
        for _ in range(500):
            quiet.warning("503 for %s: %s", "GET /", "store unavailable")
        now[0] += 10.0
        quiet.warning("503 for %s: %s", "GET /", "store unavailable")
        now[0] += 10.0
        quiet.warning("503 for %s: %s", "GET /", "store unavailable")
    assert [r.getMessage() for r in caplog.records] == [
        "503 for GET /: store unavailable",
        "503 for GET /: store unavailable (and 499 more such line(s) since the last one, "
        "not logged)",
        "503 for GET /: store unavailable",
    ]
