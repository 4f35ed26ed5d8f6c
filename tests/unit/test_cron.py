"""Scheduled jobs in-process: schedules, and failures backing off, deactivating and
timeouts waiting for the next slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prefork.cron.schedule import Schedule, ScheduleError
from prefork.cron.store import Claim, Outcome, Policy, next_state


def test_schedules() -> None:
    noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    assert Schedule.parse("*/5 * * * *").next_after(noon) == noon + timedelta(minutes=5)
    assert Schedule.parse(every="1h30m").interval == 5400
    assert str(Schedule.parse(every="10m")) == "every 600s"
    assert Schedule.from_text("every 600s") == Schedule.parse(every="10m")
    every = Schedule.parse(every="10m")
    late = noon + timedelta(hours=2, minutes=3)  # the server was down for two hours
    assert every.next_slot(noon, late, catch_up=False) == noon + timedelta(hours=2, minutes=10)
    assert every.next_slot(noon, late, catch_up=True) == noon + timedelta(minutes=10)
    for bad in ({"expression": "61 * * * *"}, {"every": "10x"}, {}):
        with pytest.raises(ScheduleError):
            Schedule.parse(**bad)


def test_failures_back_off_then_deactivate_and_timeouts_wait_for_the_next_slot() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    policy = Policy(max_failures=3, failure_window=0, retry_delay=30, catch_up=False)
    claim = Claim("job", Schedule.parse(every="1h"), now, now, 0, None)
    first = next_state(claim, Outcome("failed", 1.0, "boom"), policy)
    assert (first["next_run"], first["failures"], first["active"]) == (
        now + timedelta(seconds=30),
        1,
        True,
    )
    claim.failures, claim.first_failure = 1, now
    second = next_state(claim, Outcome("failed", 1.0, "boom"), policy)
    assert second["next_run"] == now + timedelta(seconds=60)  # doubled
    claim.failures = 2
    assert next_state(claim, Outcome("failed", 1.0, "boom"), policy)["active"] is False
    claim.failures = 0
    timeout = next_state(claim, Outcome("timeout", 9.0), policy)
    assert timeout["next_run"] == now + timedelta(hours=1)  # never retried in a loop
    ok = next_state(claim, Outcome("ok", 0.1), policy)
    assert (ok["failures"], ok["first_failure"]) == (0, None)
    patient = Policy(max_failures=3, failure_window=7 * 86400, retry_delay=30, catch_up=False)
    claim.failures, claim.first_failure = 5, now - timedelta(days=1)
    assert next_state(claim, Outcome("failed", 1.0), patient)["active"] is True
