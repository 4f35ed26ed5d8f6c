"""Jobs for bench/cron_jobs.py: BENCH_CRON_JOBS no-op jobs, a marker job and a CPU burner."""

from __future__ import annotations

import os
import time

from prefork.cron import JobContext, cron


def _noop(ctx: JobContext) -> None:
    """Nothing: what is measured is prefork's dispatch around it."""


for _number in range(int(os.environ.get("BENCH_CRON_JOBS", "0"))):
    cron(every="1h", name=f"noop.{_number:04d}")(_noop)


@cron(every="1h", name="bench.mark")
def mark(ctx: JobContext) -> None:
    """Does nothing either; its run row's start time is the wake-up time."""


@cron(every="1h", name="bench.burn")
def burn(ctx: JobContext) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        sum(range(10000))
