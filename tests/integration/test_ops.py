"""Operations: sizing (`prefork tune`, workers = auto)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from prefork.ops.machine import detect
from prefork.ops.sizing import plan
from tests.integration.conftest import PREFORK, ROOT, ServerFactory


def prefork(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREFORK, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def tuned(*args: str) -> dict[str, int]:
    result = prefork("tune", *args)
    assert result.returncode == 0, result.stderr
    return {
        key: int(value)
        for key, value in re.findall(r"^(\w+) = (\d+)$", result.stdout, re.MULTILINE)
    }


@pytest.mark.parametrize(
    ("machine", "workers", "cron"),
    [
        (("--cpus", "2", "--ram", "2G"), 3, 1),  # the hosting table's three rows
        (("--cpus", "2", "--ram", "4G"), 4, 1),
        (("--cpus", "4", "--ram", "8G"), 8, 2),
        (("--cpus", "4", "--ram", "8G", "--users", "60"), 8, 1),  # Odoo's worked example
    ],
)
def test_tune_reproduces_the_reference_sizes(
    machine: tuple[str, ...], workers: int, cron: int
) -> None:
    options = tuned(*machine)
    assert (options["workers"], options["max_cron_threads"]) == (workers, cron)
    assert options["limit_memory_soft"] < options["limit_memory_hard"]


@pytest.mark.usefixtures("database_uri")
def test_tune_output_is_a_valid_configuration(tmp_path: Path) -> None:
    result = prefork("tune", "--cpus", "2", "--ram", "4G")
    config = tmp_path / "prefork.conf"
    config.write_text(result.stdout)
    check = prefork("check", "-c", str(config), "-p", "0", "--data-dir", str(tmp_path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "mode: multi-processing (workers = 4)" in check.stdout
    assert all(line.startswith((";", "[")) or " = " in line for line in result.stdout.splitlines())


def test_tune_reports_bad_input() -> None:
    bad = prefork("tune", "--ram", "lots")
    assert bad.returncode == 2 and "--ram" in bad.stderr and "Traceback" not in bad.stderr


def test_workers_auto_uses_the_rule_and_logs_it(server_factory: ServerFactory) -> None:
    from tests.integration.test_master import wait_workers

    machine = detect()
    expected = plan(machine.cpus, machine.ram).workers
    server = server_factory.start(
        "--app", "tests.apps.testapp:app", "--workers", "auto", "--max-cron-threads", "0"
    )
    assert re.search(
        rf"workers = auto: {expected} HTTP workers for {machine.cpus} CPU", server.log()
    )
    wait_workers(server, expected)


def test_check_warns_about_forwarded_headers_without_proxy_mode(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory.start(
        "--app", "tests.apps.testapp:app", "--workers", "1", "--max-cron-threads", "0"
    )
    before = prefork("check", "-p", "0", "--data-dir", str(tmp_path / "data"))
    assert "X-Forwarded-For" not in before.stdout
    assert server.get("/echo", **{"X-Forwarded-For": "203.0.113.9"})[0] == 200
    server.wait_log(r"carries X-Forwarded-For but proxy_mode is off")
    after = prefork("check", "-p", "0", "--data-dir", str(tmp_path / "data"))
    assert re.search(
        r"warning: proxy_mode is off but requests arrived with X-Forwarded-For "
        r"\(.* from 127\.0\.0\.1\)",
        after.stdout,
    ), after.stdout
    with_proxy = prefork("check", "-p", "0", "--proxy-mode", "--data-dir", str(tmp_path / "data"))
    assert "X-Forwarded-For" not in with_proxy.stdout
