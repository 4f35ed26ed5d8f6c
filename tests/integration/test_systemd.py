"""`prefork systemd` and the sd_notify messages the master sends (Type=notify)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MODES, PREFORK, ROOT, ServerFactory


def unit(*args: str) -> str:
    result = subprocess.run(
        [PREFORK, "systemd", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_unit_is_complete_and_verifies(tmp_path: Path) -> None:
    config = tmp_path / "prefork.conf"
    config.write_text("[options]\nworkers = 2\nlimit_time_real = 60\n")
    text = unit("-c", str(config), "--user", "nobody", "--group", "nogroup")
    for line in (
        "Type=notify",
        "NotifyAccess=all",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=nobody",
        "Group=nogroup",
        "Restart=on-failure",
        "KillMode=mixed",
        "TimeoutStopSec=90",
        "LimitNOFILE=65536",
        "WantedBy=multi-user.target",
        f"-m prefork run -c {config}",
    ):
        assert line in text, line
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze is not installed")
    path = tmp_path / "prefork.service"
    path.write_text(text.replace("User=nobody", "User=root").replace("Group=nogroup", "Group=root"))
    result = subprocess.run(
        [verify, "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(20)
    yield sock
    sock.close()


def next_message(sock: socket.socket) -> dict[str, str]:
    fields = sock.recv(4096).decode().split("\n")
    return dict(field.split("=", 1) for field in fields)


def test_the_stop_timeout_leaves_room_for_the_drain() -> None:
    assert "TimeoutStopSec=103" in unit("--limit-time-real", "60", "--drain-delay", "12.5")


@pytest.mark.parametrize("mode", list(MODES))
def test_ready_reloading_stopping(
    server_factory: ServerFactory, notify_socket: socket.socket, mode: str
) -> None:
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--max-cron-threads",
        "0",
        *MODES[mode],
        env={"NOTIFY_SOCKET": notify_socket.getsockname()},
    )
    ready = next_message(notify_socket)
    assert ready["READY"] == "1" and ready["MAINPID"] == str(server.proc.pid)
    assert server.get("/echo")[0] == 200
    if mode == "workers":
        server.signal(signal.SIGHUP)
        reloading = next_message(notify_socket)
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        assert next_message(notify_socket)["READY"] == "1"  # the new generation serves
    server.signal(signal.SIGTERM)
    assert next_message(notify_socket) == {"STOPPING": "1"}
    assert server.proc.wait(30) == 0


def test_unix_sockets_under_run_get_a_runtime_directory(tmp_path: Path) -> None:
    text = unit(
        "--workers",
        "2",
        "--http-interface",
        "unix:/run/shop/http.sock",
        "--gevent-interface",
        "unix:/run/shop-bus/bus.sock",
    )
    assert "RuntimeDirectory=shop shop-bus\nRuntimeDirectoryMode=0755\n" in text
    assert "RuntimeDirectory" not in unit("--http-interface", "unix:/srv/shop/http.sock")
    verify = shutil.which("systemd-analyze")
    if verify is not None:
        path = tmp_path / "prefork.service"
        path.write_text(text)
        result = subprocess.run(
            [verify, "verify", str(path)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_unix_socket_in_tmp_gets_no_private_tmp() -> None:
    """With PrivateTmp the socket would be made in the service's own /tmp, out of nginx's
    reach."""
    assert "PrivateTmp=true" in unit("--http-interface", "unix:/run/shop/http.sock")
    text = unit("--workers", "2", "--http-interface", "unix:/tmp/shop/http.sock")
    assert "PrivateTmp" not in text.replace("# No PrivateTmp", "")
    assert "# No PrivateTmp: the socket /tmp/shop/http.sock must be where nginx" in text
