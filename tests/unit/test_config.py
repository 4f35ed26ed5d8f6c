"""Configuration in-process: the seed block, every error path, precedence, aliases, the
generated reference (the command line's own runs are in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefork.config import ConfigError, load_settings
from prefork.config.loader import Assignment
from prefork.config.reference import render

ROOT = Path(__file__).resolve().parents[2]


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


def test_seed_block_loads_as_is(tmp_path: Path) -> None:
    loaded = load_settings(config_path=write(tmp_path, SEED), environ={})
    s = loaded.settings
    assert (s.workers, s.max_cron_threads, s.gevent_port, s.proxy_mode, s.db_maxconn) == (
        4,
        1,
        8072,
        True,
        64,
    )
    assert (s.limit_memory_soft, s.limit_memory_hard) == (640 << 20, 768 << 20)
    assert (s.limit_time_cpu, s.limit_time_real) == (60, 120)
    assert len(loaded.warnings) == 1
    assert (
        "prefork.conf:8: option 'longpolling_port' is deprecated, use 'gevent_port'"
        in (loaded.warnings[0])
    )


def test_odoo_database_options_load_with_false_meaning_unset(tmp_path: Path) -> None:
    text = (
        "[options]\ndb_host = False\ndb_port = False\ndb_user = odoo\n"
        "db_password = False\ndb_name = False\ndb_sslmode = prefer\n"
        "db_maxconn_gevent = False\nlogfile = False\nproxy_mode = False\n"
    )
    loaded = load_settings(config_path=write(tmp_path, text), environ={})
    s = loaded.settings
    assert (s.db_host, s.db_port, s.db_user, s.db_password, s.db_name) == ("", 0, "odoo", "", "")
    assert (s.db_maxconn_gevent, s.logfile, s.proxy_mode) == (0, "", False)
    assert loaded.warnings == []


def test_a_bad_database_option_names_file_line_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\ndb_sslmode = sometimes\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=path, environ={})
    assert str(caught.value) == (
        f"{path}:2: option 'db_sslmode': expected one of disable, "
        "allow, prefer, require, verify-ca, verify-full, got 'sometimes'"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("limit_memory_soft = lots", "option 'limit_memory_soft': expected a size in bytes"),
        ("proxy_mode = maybe", "option 'proxy_mode': expected True or False, got 'maybe'"),
        ("http_port = 70000", "option 'http_port': expected a port number between 0 and 65535"),
        ("wokers = 4", "unknown option 'wokers'; did you mean 'workers'?"),
        ("workerz = 4", "unknown option 'workerz'; did you mean 'workers'?"),
        ("xmlrpc_prot = 8169", "unknown option 'xmlrpc_prot'; did you mean 'xmlrpc_port'?"),
        ("http_enable = maybe", "option 'http_enable': expected True or False, got 'maybe'"),
        (
            "http_enable = False",
            "option 'http_enable' = False is not supported: prefork always runs its HTTP service",
        ),
        ("xmlrpc = False", "option 'xmlrpc' = False is not supported"),
        ("log_level = loud", "option 'log_level': expected one of debug, info, warning"),
        ("just some words", "expected '[section]' or 'key = value'"),
    ],
)
def test_file_errors(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, f"[options]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=path, environ={})
    assert str(caught.value).startswith(f"{path}:2: ")
    assert message in str(caught.value)


def test_odoo_keys_warn_once_each(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[options]\naddons_path = /opt/addons\nlist_db = False\ndbfilter = ^%d$\n"
    )
    loaded = load_settings(config_path=path, environ={})
    assert len(loaded.warnings) == 3
    assert loaded.warnings[0] == (
        f"{path}:2: Odoo option 'addons_path' is ignored by prefork "
        "(Odoo's module loading; prefork serves one WSGI "
        "application (app))"
    )
    assert all("is ignored by prefork" in w for w in loaded.warnings)


def test_other_sections_are_left_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nworkers = 2\n[queue_job]\nchannels = root:2\n")
    assert load_settings(config_path=path, environ={}).settings.workers == 2


def test_soft_limit_above_hard_limit_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nlimit_memory_soft = 1500M\nlimit_memory_hard = 1G\n")
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


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PREFORK_WORKERS": "-1"})
    assert str(caught.value) == (
        "environment variable PREFORK_WORKERS: option 'workers': "
        "expected a whole number >= 0 or 'auto', got '-1'"
    )


def test_generated_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/configuration.md is stale: python -m prefork.config.reference > docs/configuration.md"
    )


def test_runbot_logs_from_odoo_s_level_25() -> None:
    import logging

    from prefork.logs import setup_logging

    root = logging.getLogger()
    saved = root.level, root.handlers[:]
    try:
        setup_logging("runbot")
        assert root.level == 25
        assert not root.isEnabledFor(logging.INFO) and root.isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


def test_the_odoo_table_holds_against_the_option_table() -> None:
    from prefork.config.odoo_keys import IGNORED, IMPLEMENTED, MAPPED, ODOO_KEYS
    from prefork.config.settings import ALIASES, SPECS

    assert len({entry.key for entry in ODOO_KEYS}) == len(ODOO_KEYS)
    for entry in ODOO_KEYS:
        if entry.status == IMPLEMENTED:
            assert entry.target == entry.key and entry.key in SPECS, entry.key
        elif entry.status == MAPPED:
            assert entry.target in SPECS and entry.key not in SPECS, entry.key
        else:
            assert entry.key not in SPECS and not entry.target, entry.key
        if entry.status == IGNORED:
            assert entry.note, entry.key
    odoo_names = {entry.key for entry in ODOO_KEYS if entry.status == MAPPED}
    assert set(ALIASES) <= odoo_names  # a prefork alias is Odoo's old name


def test_no_odoo_flag_shadows_a_prefork_flag_of_another_meaning() -> None:
    import argparse

    from prefork.config.command_line import build_parser
    from prefork.config.odoo_keys import ODOO_KEYS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("run", "check"):
        actions = sub.choices[command]._option_string_actions
        for entry in ODOO_KEYS:
            for flag in entry.flags:
                for name in flag.names:
                    dest = actions[name].dest
                    assert dest in (entry.key, entry.target) or dest.startswith(
                        (f"odoo:{entry.key}:", f"alias:{entry.key}")
                    ), (command, name, dest)


def test_generated_odoo_table_is_up_to_date() -> None:
    from prefork.config.odoo_reference import render as render_odoo

    committed = (ROOT / "docs" / "odoo.md").read_text(encoding="utf-8")
    assert committed == render_odoo(), (
        "docs/odoo.md is stale: python -m prefork.config.odoo_reference > docs/odoo.md"
    )
