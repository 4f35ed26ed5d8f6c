"""Jobs for the cron tests. They record into `cron_hits` (created by the tests)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefork.cron import JobContext, cron


def _hit(ctx: JobContext, note: str = "") -> None:
    ctx.conn.execute(
        "INSERT INTO cron_hits (job, note, pid) VALUES (%s, %s, %s)", (ctx.name, note, os.getpid())
    )


@cron(every="1h", name="quick.mark")
def quick(ctx: JobContext) -> None:
    _hit(ctx)


@cron(every="1h", name="slow.sleep")
def slow(ctx: JobContext) -> None:
    ctx.progress("sleeping")
    time.sleep(30)
    _hit(ctx)


@cron(every="1h", name="fail.always")
def fail(ctx: JobContext) -> None:
    _hit(ctx, "before the error")
    raise RuntimeError("this job always fails")


@cron(every="1h", name="slow.once")
def slow_once(ctx: JobContext) -> None:
    """Writes its pid where the test can find it, then works for 3 s."""
    marker = Path(os.environ["CRONTEST_DIR"]) / "slow.once.pid"
    marker.write_text(str(os.getpid()))
    time.sleep(3)
    _hit(ctx)


_KEPT: list[bytes] = []


@cron(every="1h", name="mem.grab")
def grab(ctx: JobContext) -> None:
    """Keeps 150 MiB: the worker's RSS stays above a 100 MiB soft limit after the job."""
    block = bytearray(150 << 20)
    block[::4096] = b"x" * len(block[::4096])
    _KEPT.append(bytes(block))
    _hit(ctx)


@cron(every="1h", name="busy.cpu")
def busy(ctx: JobContext) -> None:
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        sum(range(10000))
    _hit(ctx)


def _many(number: int) -> None:
    def job(ctx: JobContext) -> None:
        _hit(ctx)

    cron(every="1h", name=f"many.{number:03d}")(job)


if os.environ.get("CRONTEST_MANY"):
    for _number in range(200):
        _many(_number)


def _lease_jobs() -> None:
    @cron(every="4s", name="lease.slot")
    def lease_slot(ctx: JobContext) -> None:
        """Says which process runs it, then works for 2 s and records its slot (the job's
        next_run, not updated before the attempt finishes)."""
        (Path(os.environ["CRONTEST_DIR"]) / "lease.slot.pid").write_text(str(os.getpid()))
        time.sleep(2)
        ctx.conn.execute(
            "INSERT INTO cron_hits (job, note, pid) SELECT name, next_run::text, "
            "%s FROM prefork.cron_job WHERE name = %s",
            (os.getpid(), ctx.name),
        )


if os.environ.get("CRONTEST_LEASE"):
    _lease_jobs()
