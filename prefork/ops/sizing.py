"""How many workers, cron workers and how much memory each: one rule for `prefork tune`
and `workers = auto`.

Sources, and how the rule meets each:
- the hosting table (2 GB / 2 vCPU: 3 workers, 1 cron; 4 GB / 2 vCPU: 4, 1; 8 GB / 4 vCPU:
  8, 2): HTTP workers are 2 per CPU unless memory allows fewer, cron workers one per two
  CPUs;
- Odoo's documentation: at most 2 x CPU + 1 workers; about 6 concurrent users per worker;
  a worker needs about 0.8 x 150 MB + 0.2 x 1 GB (most requests are light, one in five
  heavy). Given a user count, workers follow the users, and cron takes one of the
  2 x CPU + 1 slots (its worked example: 4 CPUs, 60 users -> 8 workers + 1 cron).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prefork.config.settings import SOFT_PER_HARD

MiB = 1 << 20
PER_WORKER = int((0.8 * 150 + 0.2 * 1024) * MiB)  # about 325 MiB
RESERVED = 512 * MiB  # the system, PostgreSQL's shared memory, the master
USERS_PER_WORKER = 6
HARD_CEILING = 2560 * MiB  # Odoo's default limit_memory_hard


@dataclass(frozen=True)
class Plan:
    workers: int
    cron: int
    limit_memory_soft: int
    limit_memory_hard: int
    reasons: dict[str, str]


def plan(cpus: int, ram: int, users: int = 0) -> Plan:
    slots = max(1, (ram - RESERVED) // PER_WORKER)  # processes the memory can hold
    if users:
        cron = 1
        wanted = math.ceil(users / USERS_PER_WORKER)
        workers = max(1, min(wanted, 2 * cpus + 1 - cron, slots - cron))
        why = (
            f"{users} users / {USERS_PER_WORKER} per worker = {wanted}, at most "
            f"2 x {cpus} CPU + 1 - {cron} cron = {2 * cpus + 1 - cron}, and "
            f"{slots - cron} by memory"
        )
    else:
        cron = max(1, cpus // 2)
        workers = max(1, min(2 * cpus, slots - cron))
        why = (
            f"2 per CPU = {2 * cpus}, and {max(1, slots - cron)} by memory "
            f"({slots} processes of ~{PER_WORKER // MiB} MiB in {ram // MiB} MiB "
            f"- {RESERVED // MiB} MiB reserved, minus {cron} cron)"
        )
    processes = workers + cron + 1  # and the realtime process
    hard = int(min(HARD_CEILING, max(PER_WORKER, (ram - RESERVED) // processes)))
    hard -= hard % MiB
    num, den = SOFT_PER_HARD
    soft = hard * num // den // MiB * MiB
    return Plan(
        workers,
        cron,
        soft,
        hard,
        {
            "workers": why,
            "max_cron_threads": (
                "1 (one slot of the 2 x CPU + 1 kept for jobs)"
                if users
                else f"one per two CPUs = {cron}"
            ),
            "limit_memory_hard": (
                f"{ram // MiB} MiB - {RESERVED // MiB} MiB reserved, shared by "
                f"{processes} processes, at most {HARD_CEILING // MiB} MiB"
            ),
            "limit_memory_soft": f"{100 * num // den}% of the hard limit",
        },
    )
