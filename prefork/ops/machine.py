"""What this machine (or container) offers: CPUs and memory, the cgroup limits first.

cgroup v2: cpu.max ("QUOTA PERIOD" or "max ...") and memory.max ("max" or bytes).
cgroup v1: cpu/cpu.cfs_quota_us and cpu.cfs_period_us (-1 = none), and
memory/memory.limit_in_bytes (a huge number = none). The CPU count is also capped by the
CPUs the process may run on (sched_getaffinity).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import psutil

CGROUP_ROOT = "/sys/fs/cgroup"
NO_LIMIT = 1 << 60  # v1 reports "no limit" as a number close to 2**63


@dataclass(frozen=True)
class Machine:
    cpus: int
    ram: int  # bytes
    source: str  # where the figures came from, for the explanation


def detect(root: str = CGROUP_ROOT) -> Machine:
    cpus = len(os.sched_getaffinity(0))
    ram = psutil.virtual_memory().total
    sources = []
    quota = _cpu_quota(root)
    if quota is not None and quota < cpus:
        cpus = max(1, math.ceil(quota))
        sources.append(f"cgroup CPU quota {quota:g}")
    limit = _memory_limit(root)
    if limit is not None and limit < ram:
        ram = limit
        sources.append(f"cgroup memory limit {limit >> 20} MiB")
    return Machine(cpus, ram, ", ".join(sources) or "the host")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_quota(root: str) -> float | None:
    v2 = _read(os.path.join(root, "cpu.max"))
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    quota_v1 = _read(os.path.join(root, "cpu", "cpu.cfs_quota_us"))
    period_v1 = _read(os.path.join(root, "cpu", "cpu.cfs_period_us"))
    if quota_v1 is None or period_v1 is None or int(quota_v1) <= 0:
        return None
    return int(quota_v1) / int(period_v1)


def _memory_limit(root: str) -> int | None:
    v2 = _read(os.path.join(root, "memory.max"))
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    v1 = _read(os.path.join(root, "memory", "memory.limit_in_bytes"))
    if v1 is None or int(v1) >= NO_LIMIT:
        return None
    return int(v1)
