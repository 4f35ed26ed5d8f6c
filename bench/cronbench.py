"""Jobs for bench/cron_jobs.py and bench/cron_idle.py: BENCH_CRON_JOBS no-op jobs, a marker
job, a CPU burner and a 30 s sleeper."""

from __future__ import annotations

import os
import time
from pathlib import Path

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


@cron(every="1h", name="bench.long")
def long(ctx: JobContext) -> None:
    """Waits 30 s in its transaction; says which process runs it (in BENCH_CRON_DIR)."""
    (Path(os.environ["BENCH_CRON_DIR"]) / "bench.long.pid").write_text(str(os.getpid()))
    time.sleep(30)
