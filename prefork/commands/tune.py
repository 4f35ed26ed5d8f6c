"""`prefork tune [--cpus N] [--ram SIZE] [--users N]`: an [options] block sized for the
machine (this one, cgroup limits included, unless told), each number explained."""

from __future__ import annotations

import sys

from prefork.config import kinds
from prefork.ops.machine import detect
from prefork.ops.sizing import MiB, plan

EXIT_USAGE = 2
LIMIT_TIME_CPU, LIMIT_TIME_REAL, LIMIT_REQUEST = 60, 120, 65536  # Odoo's defaults


def tune(cpus: int | None, ram: str | None, users: int) -> int:
    machine = detect()
    try:
        memory = kinds.SIZE.parse(ram) if ram else machine.ram
    except ValueError:
        print(
            f"prefork: error: --ram: expected {kinds.SIZE.expected}, got {ram!r}", file=sys.stderr
        )
        return EXIT_USAGE
    if (cpus is not None and cpus < 1) or users < 0:
        print("prefork: error: --cpus must be >= 1 and --users >= 0", file=sys.stderr)
        return EXIT_USAGE
    count = cpus or machine.cpus
    chosen = plan(count, memory, users)
    source = "as given" if cpus and ram else f"read from {machine.source}"
    lines = [
        "[options]",
        f"; prefork tune: {count} CPU(s), {memory // MiB} MiB ({source})"
        + (f", {users} concurrent users" if users else ""),
        f"; workers: {chosen.reasons['workers']}",
        f"workers = {chosen.workers}",
        f"; max_cron_threads: {chosen.reasons['max_cron_threads']}",
        f"max_cron_threads = {chosen.cron}",
        f"; limit_memory_hard: {chosen.reasons['limit_memory_hard']}",
        f"limit_memory_hard = {chosen.limit_memory_hard}",
        f"; limit_memory_soft: {chosen.reasons['limit_memory_soft']}",
        f"limit_memory_soft = {chosen.limit_memory_soft}",
        f"; limit_time_cpu, limit_time_real: Odoo's defaults, {LIMIT_TIME_CPU} s of CPU and "
        f"{LIMIT_TIME_REAL} s of wall clock per request",
        f"limit_time_cpu = {LIMIT_TIME_CPU}",
        f"limit_time_real = {LIMIT_TIME_REAL}",
        f"; limit_request: a worker is recycled (with jitter) after {LIMIT_REQUEST} requests",
        f"limit_request = {LIMIT_REQUEST}",
    ]
    print("\n".join(lines))
    return 0
