"""Cron lease lengths: a job's limit plus the grace; a job without a limit has one too."""

from __future__ import annotations

from prefork.cron.lease import GRACE, lease_seconds

LIMIT = 3  # limit_time_real_cron of the servers below: their lease is LIMIT + GRACE


def test_lease_lengths() -> None:
    assert lease_seconds(LIMIT) == LIMIT + GRACE
    assert lease_seconds(0) > 0  # a job without a limit has a lease too, renewed while it runs
