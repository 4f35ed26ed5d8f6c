"""Configuration: the seed block, every error path, precedence, aliases, the generated doc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from prefork.config import ConfigError, load_settings
from prefork.config.loader import Assignment
from prefork.config.reference import render
from tests.conftest import PREFORK

ROOT = Path(__file__).resolve().parent.parent
SEED = """\
[options]
workers = 4                       # 2 x CPU + 1 is a common start
max_cron_threads = 1              # one cron worker
limit_memory_soft = 671088640     # 640 MB
limit_memory_hard = 805306368     # 768 MB
limit_time_cpu = 60
limit_time_real = 120
longpolling_port = 8072           # deprecated name of gevent_port
proxy_mode = True
db_maxconn = 64
"""


def write(tmp_path: Path, text: str, name: str = "prefork.conf") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def prefork(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
    full_env.update(env or {})
    return subprocess.run([PREFORK, *args], capture_output=True,
                          text=True, env=full_env, cwd=ROOT, timeout=30)


def test_seed_block_loads_as_is(tmp_path: Path) -> None:
    loaded = load_settings(config_path=write(tmp_path, SEED), environ={})
    s = loaded.settings
    assert (s.workers, s.max_cron_threads, s.gevent_port, s.proxy_mode, s.db_maxconn) == (
        4, 1, 8072, True, 64)
    assert (s.limit_memory_soft, s.limit_memory_hard) == (640 << 20, 768 << 20)
    assert (s.limit_time_cpu, s.limit_time_real) == (60, 120)
    assert len(loaded.warnings) == 1
    assert "prefork.conf:8: option 'longpolling_port' is deprecated, use 'gevent_port'" in (
        loaded.warnings[0])


def test_odoo_database_options_load_with_false_meaning_unset(tmp_path: Path) -> None:
    text = ("[options]\ndb_host = False\ndb_port = False\ndb_user = odoo\n"
            "db_password = False\ndb_name = False\ndb_sslmode = prefer\n"
            "db_maxconn_gevent = False\nlogfile = False\nproxy_mode = False\n")
    loaded = load_settings(config_path=write(tmp_path, text), environ={})
    s = loaded.settings
    assert (s.db_host, s.db_port, s.db_user, s.db_password, s.db_name) == ("", 0, "odoo", "", "")
    assert (s.db_maxconn_gevent, s.logfile, s.proxy_mode) == (0, "", False)
    assert loaded.warnings == []


def test_a_bad_database_option_names_file_line_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\ndb_sslmode = sometimes\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=path, environ={})
    assert str(caught.value) == (f"{path}:2: option 'db_sslmode': expected one of disable, "
                                 "allow, prefer, require, verify-ca, verify-full, got 'sometimes'")


def test_check_prints_the_effective_settings(tmp_path: Path) -> None:
    result = prefork("check", "-c", write(tmp_path, SEED), "-p", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "mode: multi-processing (workers = 4)" in out
    assert "4 HTTP worker process(es) on 0.0.0.0:0" in out
    assert "1 realtime process (websocket/long-polling) on 0.0.0.0:8072" in out
    assert "not started" not in out
    assert out.count("deprecated") == 1
    assert "limit_memory_soft          = 671088640" in out
    assert "result: OK" in out


def test_bad_value_names_file_line_key_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\n\nworkers = four\n")
    result = prefork("check", "-c", path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"prefork: error: {path}:3: option 'workers': expected a whole number >= 0 or "
        "'auto', got 'four'")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("line", "message"), [
    ("limit_memory_soft = lots", "option 'limit_memory_soft': expected a size in bytes"),
    ("proxy_mode = maybe", "option 'proxy_mode': expected True or False, got 'maybe'"),
    ("http_port = 70000", "option 'http_port': expected a port number between 0 and 65535"),
    ("wokers = 4", "unknown option 'wokers'; did you mean 'workers'?"),
    ("zzzqqq = 1", "unknown option 'zzzqqq'"),
    ("just some words", "expected '[section]' or 'key = value'"),
])
def test_file_errors(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, f"[options]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=path, environ={})
    assert str(caught.value).startswith(f"{path}:2: ")
    assert message in str(caught.value)


def test_odoo_keys_warn_once_each(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\naddons_path = /opt/addons\nlist_db = False\n"
                 "dbfilter = ^%d$\n")
    loaded = load_settings(config_path=path, environ={})
    assert len(loaded.warnings) == 3
    assert all("Odoo option that prefork ignores" in w for w in loaded.warnings)


def test_other_sections_are_left_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nworkers = 2\n[queue_job]\nchannels = root:2\n")
    assert load_settings(config_path=path, environ={}).settings.workers == 2


def test_soft_limit_above_hard_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nlimit_memory_soft = 2G\nlimit_memory_hard = 1G\n")
    with pytest.raises(ConfigError, match="must not exceed 'limit_memory_hard'"):
        load_settings(config_path=path, environ={})


def test_precedence_defaults_file_env_cli(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nworkers = 2\nhttp_port = 9000\nlimit_request = 10\n")
    env = {"PREFORK_WORKERS": "3", "PREFORK_HTTP_PORT": "9001"}
    cli = [Assignment("workers", "5", "command line", "option '--workers'")]
    loaded = load_settings(cli, config_path=path, environ=env)
    s = loaded.settings
    assert (s.workers, s.http_port, s.limit_request, s.max_cron_threads) == (5, 9001, 10, 2)
    assert loaded.sources["limit_request"] == f"{path}:4"
    assert loaded.sources["http_port"] == "environment variable PREFORK_HTTP_PORT"


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nworkers = 0\nhttp_threads = 3\n")
    result = prefork("check", "-p", "0", env={"PREFORK_CONFIG": path})
    assert result.returncode == 0
    assert f"configuration file: {path}" in result.stdout
    assert "with 3 threads" in result.stdout


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PREFORK_WORKERS": "-1"})
    assert str(caught.value) == ("environment variable PREFORK_WORKERS: option 'workers': "
                                 "expected a whole number >= 0 or 'auto', got '-1'")


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "four"], "prefork: error: command line: option '--workers': expected a "
                            "whole number >= 0 or 'auto', got 'four'"),
    (["--wokers", "4"], "prefork: error: unknown option '--wokers'; did you mean '--workers'?"),
    (["--workers"], "prefork: error: argument --workers: expected one argument"),
    (["--limit-memory-hard", "1X"], "prefork: error: command line: option "
                                    "'--limit-memory-hard': expected a size in bytes"),
])
def test_cli_errors(args: list[str], message: str) -> None:
    result = prefork("check", *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr


def test_cli_alias_warns(tmp_path: Path) -> None:
    result = prefork("check", "-p", "0", "--longpolling-port", "9999")
    assert result.returncode == 0
    assert "--longpolling-port is deprecated, use --gevent-port" in result.stdout
    assert "on 0.0.0.0:9999" not in result.stdout  # threaded mode has no realtime process
    assert "gevent_port                = 9999" in result.stdout


def test_check_fails_when_the_port_is_taken() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = prefork("check", "--http-interface", "127.0.0.1", "-p", str(port))
    assert result.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stdout


def test_generated_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/configuration.md is stale: python -m prefork.config.reference "
        "> docs/configuration.md")
