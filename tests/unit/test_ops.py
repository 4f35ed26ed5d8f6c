"""Sizing (`prefork tune`, workers = auto) from CPU, memory and cgroup limits, in-process."""

from __future__ import annotations

from pathlib import Path

from prefork.ops.machine import detect
from prefork.ops.sizing import plan


def test_tune_respects_the_cpu_and_user_rules() -> None:
    for cpus in (1, 2, 3, 8, 16):
        for users in (0, 1, 30, 500):
            chosen = plan(cpus, 64 << 30, users)
            assert chosen.workers <= 2 * cpus + 1
            if users:
                assert chosen.workers <= max(1, -(-users // 6))
    assert plan(16, 1 << 30).workers == 1  # memory bounds it: 1 GiB holds little


def test_cgroup_v2_limits(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: below any host
    (tmp_path / "memory.max").write_text(str(3 << 30) + "\n")
    machine = detect(str(tmp_path))
    assert machine.cpus == 1 and machine.ram == 3 << 30
    assert "cgroup CPU quota 0.5" in machine.source
    assert "cgroup memory limit 3072 MiB" in machine.source
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert "cgroup" not in detect(str(tmp_path)).source


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(1 << 30) + "\n")
    machine = detect(str(tmp_path))
    assert machine.cpus == 1 and machine.ram == 1 << 30
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert "cgroup" not in detect(str(tmp_path)).source
