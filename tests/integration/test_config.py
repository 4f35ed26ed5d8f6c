"""Configuration: the seed block, every error path, precedence, aliases, the generated doc."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from prefork.config import load_settings
from tests.integration.conftest import PREFORK, free_port
from tests.unit.test_config import ROOT, SEED, write


def prefork(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFORK_")}
    full_env.update(env or {})
    return subprocess.run(
        [PREFORK, *args], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=30
    )


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
        "'auto', got 'four'"
    )
    assert "Traceback" not in result.stderr


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nworkers = 0\nhttp_threads = 3\n")
    result = prefork("check", "-p", "0", env={"PREFORK_CONFIG": path})
    assert result.returncode == 0
    assert f"configuration file: {path}" in result.stdout
    assert "with 3 threads" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--workers", "four"],
            "prefork: error: command line: option '--workers': expected a "
            "whole number >= 0 or 'auto', got 'four'",
        ),
        (["--wokers", "4"], "prefork: error: unknown option '--wokers'; did you mean '--workers'?"),
        (["--workers"], "prefork: error: argument --workers: expected one argument"),
        (
            ["--limit-memory-hard", "1X"],
            "prefork: error: command line: option '--limit-memory-hard': expected a size in bytes",
        ),
    ],
)
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


# -- Odoo's options and flags (docs/odoo.md) ---------------------------------------------------

# What Odoo 17's `odoo-bin --save` writes (defaults, sorted), plus Odoo 18's keys, the old
# xmlrpc_* names, an addon's key and non-default values to see them mapped.
ODOO_CONF = """\
[options]
addons_path = /opt/odoo/addons,/opt/odoo/odoo/addons
admin_passwd = admin
csv_internal_sep = ,
data_dir = {data_dir}
db_host = False
db_maxconn = 64
db_maxconn_gevent = False
db_name = False
db_password = False
db_port = False
db_replica_host = False
db_replica_port = False
db_sslmode = prefer
db_template = template0
db_user = False
dbfilter =
demo = {{}}
email_from = False
from_filter = False
geoip_city_db = /usr/share/GeoIP/GeoLite2-City.mmdb
geoip_country_db = /usr/share/GeoIP/GeoLite2-Country.mmdb
gevent_port = 8072
http_enable = True
import_partial =
limit_memory_hard = 2684354560
limit_memory_hard_gevent = False
limit_memory_soft = 2147483648
limit_memory_soft_gevent = False
limit_request = 65536
limit_time_cpu = 60
limit_time_real = 120
limit_time_real_cron = -1
limit_time_worker_cron = 0
list_db = True
log_db = False
log_db_level = warning
log_handler = :INFO
log_level = debug_sql
logfile =
max_cron_threads = 2
osv_memory_count_limit = 0
pg_path =
pidfile =
proxy_mode = False
reportgz = False
running_env = dev
screencasts =
screenshots = /tmp/odoo_tests
server_wide_modules = base,web
smtp_password = False
smtp_port = 25
smtp_server = localhost
smtp_ssl = False
smtp_ssl_certificate_filename = False
smtp_ssl_private_key_filename = False
smtp_user = False
syslog = False
test_enable = False
test_file =
test_tags = None
transient_age_limit = 1.0
translate_modules = ['all']
unaccent = False
upgrade_path =
websocket_keep_alive_timeout = 1800
websocket_rate_limit_burst = 10
websocket_rate_limit_delay = 0.2
without_demo = False
workers = 0
x_sendfile = False
xmlrpc_interface = 127.0.0.1
xmlrpc_port = {port}
"""


def setting_line(out: str, key: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"  {key} "))


def ignored_keys(keys: list[str]) -> list[str]:
    """The keys the Odoo table ignores (or whose prefork option does not exist yet)."""
    from prefork.config.odoo_keys import ODOO
    from prefork.config.settings import SPECS

    return [
        key
        for key in keys
        if key not in SPECS
        and key in ODOO
        and ODOO[key].status != "true only"
        and ODOO[key].target not in SPECS
    ]


def test_an_odoo_written_conf_loads_mapped_and_warned(tmp_path: Path) -> None:
    port = free_port()
    path = write(tmp_path, ODOO_CONF.format(data_dir=tmp_path / "data", port=port), "odoo.conf")
    result = prefork("check", "-c", path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()
    keys = [line.split("=")[0].strip() for line in ODOO_CONF.splitlines()[1:]]
    number = {key: n for n, key in enumerate(keys, start=2)}
    ignored = ignored_keys(keys)
    assert len(ignored) > 30
    warnings = [line for line in lines if line.startswith("warning: ")]
    for key in ignored:
        assert (
            sum(f"odoo.conf:{number[key]}: Odoo option {key!r} is ignored" in w for w in warnings)
            == 1
        ), key
    assert f"warning: {path}:{number['running_env']}: unknown option 'running_env'" in out
    assert "warning: admin_passwd is Odoo's default 'admin': it does not open" in out
    assert len(warnings) == len(ignored) + 2, "\n".join(warnings)
    assert f"HTTP service on 127.0.0.1:{port}" in out
    assert setting_line(out, "http_port").split() == [
        "http_port",
        "=",
        str(port),
        "#",
        f"{path}:{number['xmlrpc_port']}",
    ]
    assert setting_line(out, "http_interface").endswith(f"{path}:{number['xmlrpc_interface']}")
    assert setting_line(out, "websocket_lifetime").split()[2] == "1800"
    assert setting_line(out, "log_level").split()[2] == "debug"
    assert setting_line(out, "limit_memory_hard").split()[2] == "2684354560"
    assert "result: OK" in out


def test_two_names_of_one_option_resolve_as_in_odoo(tmp_path: Path) -> None:
    # Odoo's --save writes http_port = 8069 and an empty http_interface beside the old names
    # an operator kept: a default (or empty) value says nothing, the old name's applies.
    path = write(
        tmp_path,
        "[options]\nhttp_interface =\nhttp_port = 8069\n"
        "longpolling_port = 0\nxmlrpc_interface = 127.0.0.1\nxmlrpc_port = 18169\n"
        "gevent_port = 8072\n",
    )
    loaded = load_settings(config_path=path, environ={})
    assert (loaded.settings.http_interface, loaded.settings.http_port) == ("127.0.0.1", 18169)
    assert loaded.settings.gevent_port == 8072  # longpolling_port = 0 is Odoo's "not set"
    assert loaded.warnings == []
    # Two real values: the later line wins, as Odoo 15-18 read the file in order.
    path = write(tmp_path, "[options]\nhttp_port = 9100\nxmlrpc_port = 9200\n")
    loaded = load_settings(config_path=path, environ={})
    assert loaded.settings.http_port == 9200
    assert loaded.warnings == [
        f"{path}:2: option 'http_port' is overridden by option "
        f"'xmlrpc_port' ({path}:3): both set 'http_port', the later "
        "line wins, as in Odoo"
    ]
    path = write(tmp_path, "[options]\nxmlrpc_port = 9200\nhttp_port = 9100\n")
    assert load_settings(config_path=path, environ={}).settings.http_port == 9100
    path = write(
        tmp_path, "[options]\nwebsocket_keep_alive_timeout = 60\nwebsocket_lifetime = 120\n"
    )
    assert load_settings(config_path=path, environ={}).settings.websocket_lifetime == 120
    result = prefork("check", "--http-port", "9300", "--xmlrpc-port", "9400")
    assert setting_line(result.stdout, "http_port").split()[2] == "9300"
    assert "option '--xmlrpc-port' is ignored: option '--http-port' also sets" in result.stdout


def test_a_hard_limit_lowered_in_an_odoo_saved_conf_moves_the_soft_one(tmp_path: Path) -> None:
    # --save wrote the default soft limit; the operator lowered only the hard one.
    path = write(
        tmp_path, "[options]\nlimit_memory_hard = 805306368\nlimit_memory_soft = 2147483648\n"
    )
    result = prefork("check", "-c", path, "-p", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert setting_line(result.stdout, "limit_memory_soft").split()[2] == str(805306368 * 4 // 5)
    assert "note: limit_memory_soft not set: 614.4 MiB (80% of limit_memory_hard" in result.stdout
    result = prefork("check", "-c", path, "-p", "0", "--limit-memory-hard", "512M")
    assert result.returncode == 0, result.stdout + result.stderr
    assert setting_line(result.stdout, "limit_memory_soft").split()[2] == str((512 << 20) * 4 // 5)


@pytest.mark.parametrize(
    ("level", "effective"),
    [
        ("debug_rpc_answer", "debug"),
        ("debug_rpc", "debug"),
        ("debug_sql", "debug"),
        ("runbot", "runbot"),
        ("test", "info"),
        ("notset", "info"),
        ("warn", "warning"),
    ],
)
def test_odoo_log_levels_in_file_env_and_flag(tmp_path: Path, level: str, effective: str) -> None:
    path = write(tmp_path, f"[options]\nlog_level = {level}\n")
    assert load_settings(config_path=path, environ={}).settings.log_level == effective
    env = {"PREFORK_LOG_LEVEL": level.upper()}
    assert load_settings(environ=env).settings.log_level == effective
    result = prefork("check", "-p", "0", f"--log-level={level}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert setting_line(result.stdout, "log_level").split()[2:] == [
        effective,
        "#",
        "command",
        "line",
    ]


def odoo_flags() -> list[tuple[str, str]]:
    """(flag as typed, Odoo key) for every odoo-bin flag prefork ignores."""
    from prefork.config.odoo_keys import IGNORED, NONE, ODOO_KEYS

    return [
        (flag.names[-1] if flag.arg == NONE else f"{flag.names[-1]}=x", entry.key)
        for entry in ODOO_KEYS
        if entry.status == IGNORED
        for flag in entry.flags
    ]


@pytest.mark.parametrize("command", ["check", "run", "server"])  # odoo-bin server = run
def test_every_odoo_bin_flag_is_accepted_and_warned_once(command: str, tmp_path: Path) -> None:
    flags = [
        flag for flag, _ in odoo_flags() if not (command != "check" and flag == "--stop-after-init")
    ]
    assert len(flags) > 50
    args = [
        *flags,
        "-i",
        "sale",
        "-u",
        "all",
        "--log-handler",
        "a:DEBUG",
        "--log-handler",
        "b:INFO",
        "--without-demo",
        "all",
        "-p",
        "0",
    ]
    if command != "check":  # initialises, then exits
        args += [
            "--stop-after-init",
            "--db-uri",
            f"sqlite:///{tmp_path}/flags.db",
            "--data-dir",
            str(tmp_path / "data"),
        ]
    result = prefork(command, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    for flag in flags:
        name = flag.split("=")[0]
        assert text.count(f"command line: Odoo option {name} is ignored by prefork") == 1, name


def test_odoo_bin_flags_with_a_prefork_meaning_set_that_option() -> None:
    port = free_port()
    result = prefork(
        "check",
        "--xmlrpc-port",
        str(port),
        "--xmlrpc-interface",
        "127.0.0.1",
        "--limit-time-worker-cron",
        "600",
        "-d",
        "mydb",
        "-r",
        "odoo",
    )
    assert setting_line(result.stdout, "http_port").split()[2:] == [
        str(port),
        "#",
        "command",
        "line",
    ]
    assert setting_line(result.stdout, "http_interface").split()[2] == "127.0.0.1"
    assert setting_line(result.stdout, "limit_time_worker_cron").split()[2] == "600"
    assert setting_line(result.stdout, "db_name").split()[2] == "mydb"
    both = prefork("check", "--xmlrpc-port", "1", "-p", str(port))
    assert setting_line(both.stdout, "http_port").split()[2] == str(port)


@pytest.mark.parametrize(("flag", "key"), [("--no-http", "http_enable"), ("--no-xmlrpc", "xmlrpc")])
def test_no_http_is_refused(flag: str, key: str) -> None:
    result = prefork("check", flag)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"prefork: error: command line: option {flag} ({key} = False) is not supported"
    )


def test_one_memory_limit_moves_the_other_s_default(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nlimit_memory_hard = 805306368\n")
    result = prefork("check", "-c", path, "-p", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert (
        "note: limit_memory_soft not set: 614.4 MiB (80% of limit_memory_hard 768 MiB) "
        "instead of its default 2048 MiB"
    ) in out
    assert setting_line(out, "limit_memory_soft").split()[2] == str(805306368 * 4 // 5)
    assert (
        "memory limits (resident memory, RSS): a worker above 614.4 MiB "
        "(limit_memory_soft) is recycled after its request, one above 768 MiB "
        "(limit_memory_hard) has its request stopped; Odoo 15-18 compare virtual memory "
        "(VMS)"
    ) in out
    loaded = load_settings(environ={"PREFORK_LIMIT_MEMORY_SOFT": "4G"})
    assert loaded.settings.limit_memory_hard == 5 << 30
    assert loaded.notes == [
        "limit_memory_hard not set: 5120 MiB (125% of limit_memory_soft "
        "4096 MiB) instead of its default 2560 MiB"
    ]
    assert load_settings(environ={"PREFORK_LIMIT_MEMORY_HARD": "0"}).notes == []


def test_two_inconsistent_memory_limits_name_both_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "[options]\nlimit_memory_soft = 1536M\n")
    result = prefork("check", "-c", path, "--limit-memory-hard", "1G")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "prefork: error: option 'limit_memory_soft' (1610612736 bytes, 1536 MiB, from "
        f"{path}:2) must not exceed 'limit_memory_hard' (1073741824 bytes, 1024 MiB, from "
        "command line)"
    )
