"""Secrets: never printed by `check`, never echoed by an error, never logged; Odoo's default
admin_passwd never opens the dashboard."""

from __future__ import annotations

import base64
import hashlib
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import Server, ServerFactory
from tests.integration.test_config import prefork
from tests.unit.test_config import write

SECRETS = {
    "admin_passwd": "odoo-master-4f1c",
    "dashboard_password": "dash-9b2e",
    "session_secret": "sign-77aa01",
    "db_password": "pg-pass-1d3c",
}
CONF = f"""\
[options]
admin_passwd = {SECRETS["admin_passwd"]}
dashboard_password = {SECRETS["dashboard_password"]}
session_secret = {SECRETS["session_secret"]}
db_password = {SECRETS["db_password"]}
db_uri = postgresql://odoo:uri-pass-5e6f@127.0.0.1:1/odoo?password=query-pass-6a7b
session_store = redis://:redis-pass-8c9d@127.0.0.1:1/0
alert_webhook = https://bot:hook-pass-2a3b@hooks.example.com/services/T01/B02/tok-3c4d
"""
EVERY_SECRET = [
    *SECRETS.values(),
    "uri-pass-5e6f",
    "query-pass-6a7b",
    "redis-pass-8c9d",
    "hook-pass-2a3b",
    "tok-3c4d",
    "T01/B02",
]


def _ab64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def odoo_hash(password: str, rounds: int = 1000) -> str:
    """A hash as Odoo's database manager writes admin_passwd (fewer rounds: a test)."""
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$pbkdf2-sha512${rounds}${_ab64(salt)}${_ab64(digest)}"


def test_check_shows_no_secret(tmp_path: Path) -> None:
    result = prefork("check", "-c", write(tmp_path, CONF), "-p", "0")
    out = result.stdout + result.stderr
    for secret in EVERY_SECRET:
        assert secret not in out, f"{secret!r} shown by check:\n{out}"
    assert "postgresql://odoo:********@127.0.0.1:1/odoo?password=********" in out
    assert "redis://:********@127.0.0.1:1/0" in out
    assert "https://********@hooks.example.com/********" in out
    assert "dashboard at /prefork/: on (password: dashboard_password)" in out


@pytest.mark.parametrize(
    "line",
    [
        "db_uri = mysql://odoo:typo-pass-1234@db/odoo",
        "db_uri = host=db user=odoo password=typo-pass-1234 dbname=odoo",
        "session_store = redis:/:typo-pass-1234@127.0.0.1/0",
    ],
)
def test_a_refused_secret_is_not_echoed(tmp_path: Path, line: str) -> None:
    result = prefork("check", "-c", write(tmp_path, f"[options]\n{line}\n"))
    assert result.returncode == 2
    assert "prefork.conf:2" in result.stderr and "expected" in result.stderr
    assert "typo-pass-1234" not in result.stdout + result.stderr


def _dashboard(server: Server, password: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/prefork/api",
        headers={"Authorization": "Basic " + base64.b64encode(f"x:{password}".encode()).decode()},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as refused:
        refused.close()
        return int(refused.code), b""


@pytest.mark.parametrize("admin", ["admin", odoo_hash("admin")], ids=["plain", "hashed"])
def test_odoos_default_admin_passwd_never_opens_the_dashboard(
    server_factory: ServerFactory, admin: str
) -> None:
    server: Server = server_factory.start(
        "--app", "tests.apps.testapp:app", "--admin-passwd", admin
    )
    server.wait_log("admin_passwd is Odoo's default 'admin': it does not open the dashboard")
    status, body = _dashboard(server, "admin")
    assert status == 200 and b'"path": "/prefork/api"' in body  # the application's answer
    assert b'"processes"' not in body and "$pbkdf2" not in server.log()


def test_dashboard_password_opens_it_and_admin_does_not(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server: Server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--admin-passwd",
        "admin",
        "--dashboard-password",
        "dash-9b2e",
    )
    status, body = _dashboard(server, "dash-9b2e")
    assert status == 200 and b'"processes"' in body  # the dashboard's state
    assert _dashboard(server, "admin") == (401, b"")
    assert "dash-9b2e" not in server.log()
    assert "it does not open the dashboard" not in server.log()  # its own password is set
    result = prefork("check", "--admin-passwd", "admin", "-p", "0")
    assert "warning: admin_passwd is Odoo's default 'admin'" in result.stdout
    assert "dashboard at /prefork/: off" in result.stdout
    result = prefork("check", "--admin-passwd", odoo_hash("s3cret"), "-p", "0")
    assert "dashboard at /prefork/: on (password: admin_passwd)" in result.stdout
    assert "Odoo's default" not in result.stdout
    result = prefork("check", "--dashboard-password", "$pbkdf2-sha512$600000$bogus", "-p", "0")
    assert (
        "warning: dashboard_password starts like Odoo's $pbkdf2-sha512$ hash but is not one"
    ) in result.stdout
    assert "dashboard at /prefork/: off" in result.stdout


def test_what_prefork_keeps_in_data_dir_is_for_its_user_alone(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Request lines (run/), sessions and their key, metrics: 0700 directories, 0600
    files, whatever the umask; a data_dir left looser is named at start and by check."""
    data = tmp_path / "new" / "data"  # its parent is missing too
    server = server_factory.start(
        "--app",
        "tests.apps.sessionapp:app",
        "--workers",
        "1",
        "--max-cron-threads",
        "0",
        "--data-dir",
        str(data),
    )
    assert server.get("/login?user=ada")[0] == 200
    deadline = time.monotonic() + 10
    while not list((data / "run").glob("*.json")) or not list(data.glob("sessions/*/*/*")):
        assert time.monotonic() < deadline, sorted(data.rglob("*"))
        time.sleep(0.1)
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in [data.parent, *data.rglob("*")]}
    loose = {
        str(path): f"{mode:o}"
        for path, mode in modes.items()
        if mode != (0o700 if path.is_dir() else 0o600)
        and "metrics" not in path.relative_to(data.parent).parts[:-1]
    }
    assert loose == {}  # prometheus_client's own files are in a 0700 directory
    assert {"run", "sessions", "session.secret", "metrics"} <= {p.name for p in data.iterdir()}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    server.stop()
    data.chmod(0o755)
    (data / "session.secret").chmod(0o644)
    checked = prefork("check", "--data-dir", str(data), "--db-uri", "sqlite:///x.db")
    warned = [line for line in checked.stdout.splitlines() if "other users can read" in line]
    assert len(warned) == 2 and f"chmod 700 {data}" in warned[0], checked.stdout
    assert f"chmod 600 {data / 'session.secret'}" in warned[1]
