"""Threaded mode as an operator meets it: start, demo page, stop, refusals."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import Server, ServerFactory


def test_demo_page_is_served_without_an_app(server_factory: ServerFactory) -> None:
    server = server_factory.start()
    status, headers, body = server.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"prefork is running" in body and b"threaded" in body
    assert server.get("/nope")[0] == 404


def test_console_script_is_installed() -> None:
    beside = Path(sys.executable).with_name("prefork")
    script = str(beside) if beside.exists() else shutil.which("prefork")
    assert script, "the 'prefork' console script is not on PATH"
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("prefork ")


def _slow_request(server: Server, seconds: float, out: list[object]) -> None:
    try:
        out.append(server.get(f"/sleep?s={seconds}"))
    except OSError as exc:
        out.append(exc)


def test_term_finishes_in_flight_requests_then_exits(threaded_server: Server) -> None:
    server = threaded_server
    results: list[Any] = []
    thread = threading.Thread(target=_slow_request, args=(server, 1.5, results))
    thread.start()
    server.wait_log(r"GET /sleep|HTTP service", timeout=5)
    time.sleep(0.3)
    server.signal(signal.SIGTERM)
    server.wait_log("stopping gracefully")
    with pytest.raises(OSError):  # no new connections once stopping
        server.connect(timeout=1).close()
    thread.join(10)
    assert results and results[0][0] == 200 and results[0][2] == b"slept"
    assert server.proc.wait(10) == 0
    assert "stopped" in server.log()


def test_second_signal_forces_the_stop(threaded_server: Server) -> None:
    server = threaded_server
    results: list[object] = []
    thread = threading.Thread(target=_slow_request, args=(server, 30, results))
    thread.start()
    time.sleep(0.5)
    server.signal(signal.SIGINT)
    server.wait_log("stopping gracefully")
    started = time.monotonic()
    server.signal(signal.SIGINT)
    server.proc.wait(10)
    assert time.monotonic() - started < 5
    assert "stopping now, 1 request(s) abandoned" in server.log()
    thread.join(10)


def test_missing_app_module_is_a_clear_error(server_factory: ServerFactory) -> None:
    server = server_factory.start("--app", "no_such_module:app", wait=False)
    assert server.proc.wait(10) == 2
    assert "app 'no_such_module:app': no module named 'no_such_module'" in server.log()
    assert "Traceback" not in server.log()


def test_pidfile_is_written_and_removed(server_factory: ServerFactory, tmp_path: Path) -> None:
    pidfile = tmp_path / "prefork.pid"
    server = server_factory.start("--pidfile", str(pidfile))
    assert int(pidfile.read_text()) == server.proc.pid
    server.stop()
    assert not pidfile.exists()


def test_port_in_use_is_a_clear_error(
    threaded_server: Server, server_factory: ServerFactory
) -> None:
    server = threaded_server
    other = server_factory.start("-p", str(server.port), wait=False)
    other_port = server.port
    assert other.proc.wait(10) == 1
    assert (
        f"cannot listen on 127.0.0.1:{other_port} (http_port): Address already in use"
        in other.log()
    )


def test_threaded_soft_memory_limit_reloads_the_process(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        "--app",
        "tests.apps.testapp:app",
        "--limit-memory-soft",
        "100M",
        "--limit-memory-hard",
        "1G",
    )
    assert server.get("/mem?mb=150&keep=1")[:3:2] == (200, b"allocated 150 MiB")
    server.wait_log(
        r"threaded mode limit reached \(memory-soft: RSS [\d.]+ MiB > limit "
        r"100\.0 MiB\): reloading the whole process"
    )
    server.wait_log(r"(?s)re-executing.*HTTP service running")
    status, _, body = server.get("/echo")
    assert status == 200 and json.loads(body)["pid"] == server.proc.pid
    assert psutil.Process(server.proc.pid).memory_info().rss < 100 << 20


def test_threaded_real_time_limit_reloads_the_process(server_factory: ServerFactory) -> None:
    server = server_factory.start("--app", "tests.apps.testapp:app", "--limit-time-real", "2")
    results: list[object] = []
    thread = threading.Thread(target=_slow_request, args=(server, 30, results))
    thread.start()
    server.wait_log(
        r"threaded mode limit reached \(real-time: request 'GET /sleep\?s=30 "
        r"HTTP/1\.1' running [\d.]+s > limit 2s\)",
        timeout=15,
    )  # checked every second
    thread.join(15)
    assert results and isinstance(results[0], OSError)  # its connection died with the threads
    server.wait_log(r"(?s)re-executing.*HTTP service running")
    assert server.get("/echo")[0] == 200


def test_threaded_hup_reloads_the_configuration(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Odoo's threaded server restarts itself on HUP: the same process and port, the
    configuration file read again (here: a new dashboard password)."""
    conf = tmp_path / "prefork.conf"
    conf.write_text("[options]\ndashboard_password = first-pass\n")
    server = server_factory.start("--app", "tests.apps.testapp:app", "-c", str(conf))
    assert server.get("/prefork/api", Authorization=_basic("first-pass"))[0] == 200
    conf.write_text("[options]\ndashboard_password = second-pass\n")
    server.signal(signal.SIGHUP)
    server.wait_log(
        r"(?s)SIGHUP: the configuration is read again.*re-executing.*"
        r"HTTP service running"
    )
    assert server.proc.poll() is None
    assert server.get("/prefork/api", Authorization=_basic("first-pass"))[0] == 401
    assert server.get("/prefork/api", Authorization=_basic("second-pass"))[0] == 200


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
