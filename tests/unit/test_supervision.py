"""The master's process kinds and exit classification, in-process: how many of each kind it
wants, the limits a process is forked with, and an exit judged by those limits."""

from __future__ import annotations

import dataclasses

from prefork.config import Settings
from prefork.servers.exits import ExitReason, KillOrder, classify
from prefork.servers.kinds import CRON, HTTP, KINDS, REALTIME
from prefork.workers import exitcodes
from prefork.workers.scoreboard import SlotView

MiB = 1 << 20


def view(value: int = 0, error: str = "") -> SlotView:
    return SlotView(
        pid=1,
        state=0,
        heartbeat=0.0,
        request_started=0.0,
        requests=0,
        value=value,
        connections=0,
        request_line="",
        exit_line="",
        error=error,
    )


def exited(code: int) -> int:
    return code << 8  # a wait status for exit(code)


def test_each_kind_has_its_own_name_and_role() -> None:
    assert [kind.name for kind in KINDS] == ["http", "cron", "realtime"]
    assert HTTP.role(2) == "http worker #2"
    assert CRON.role(1) == "cron worker #1"
    assert REALTIME.role(1) == "realtime process"
    assert HTTP.answers_clients and not CRON.answers_clients


def test_without_postgresql_there_are_no_cron_workers_and_no_realtime_process() -> None:
    settings = Settings(max_cron_threads=2)
    assert HTTP.target(settings, None, 4) == 4
    assert CRON.target(settings, None, 4) == 0
    assert REALTIME.target(settings, None, 4) == 0


def test_each_kind_takes_its_own_limits() -> None:
    settings = Settings(
        limit_memory_soft=100 * MiB,
        limit_memory_hard=200 * MiB,
        limit_memory_soft_gevent=300 * MiB,
        limit_time_real=60,
        limit_time_real_cron=600,
        limit_time_cpu=30,
    )
    assert HTTP.limits(settings).memory_soft == 100 * MiB
    assert REALTIME.limits(settings).memory_soft == 300 * MiB
    assert REALTIME.limits(settings).memory_hard == 200 * MiB  # no gevent one: the workers'
    assert CRON.limits(settings).time_real_job == 600
    assert HTTP.limits(settings).time_real == 60


def test_an_exit_after_a_reload_names_the_limit_the_worker_was_forked_with() -> None:
    before = Settings(limit_memory_soft=100 * MiB, limit_memory_hard=200 * MiB)
    forked_with = HTTP.limits(before)
    after = dataclasses.replace(before, limit_memory_soft=150 * MiB)  # a HUP changed it
    assert HTTP.limits(after).memory_soft == 150 * MiB
    reason, detail = classify(
        exited(exitcodes.MEMORY_SOFT), view(value=120 * MiB), None, forked_with, replacing=False
    )
    assert reason is ExitReason.MEMORY_SOFT
    assert detail == "RSS 120.0 MiB > limit 100.0 MiB"


def test_what_the_master_ordered_overrides_the_status() -> None:
    order = KillOrder(ExitReason.REAL_TIME, "request running 61.0s > limit 60s")
    limits = HTTP.limits(Settings())
    assert classify(exited(0), view(), order, limits, False) == (order.reason, order.detail)
    assert classify(exited(exitcodes.STOPPED), view(), None, limits, True)[0] == "reload"
    assert classify(exited(exitcodes.STOPPED), view(), None, limits, False)[0] == "stopped"
    reason, detail = classify(
        exited(exitcodes.BOOT_FAILED), view(error="Trace\nBoom: x\n"), None, limits, False
    )
    assert (reason, detail) == (ExitReason.BOOT_FAILED, "Boom: x")
    blank = classify(exited(exitcodes.BOOT_FAILED), view(error="\n"), None, limits, False)
    assert blank == (ExitReason.BOOT_FAILED, "")  # a blank error is no traceback
    assert classify(exited(77), view(), None, limits, False) == (ExitReason.CRASH, "exit code 77")
