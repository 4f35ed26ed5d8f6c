"""The buffered access log: the writer itself, and real servers that must lose no line."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import MODES, Server, ServerFactory, free_port
from tests.integration.load import Load
from tests.integration.test_master import wait_for
from tests.unit.test_access_log import LINE

APP = ("--app", "tests.apps.testapp:app", "--max-cron-threads", "0")


# -- the writer ------------------------------------------------------------------------------


# -- which access log a server gets ----------------------------------------------------------


# -- real servers ----------------------------------------------------------------------------


def access_lines(text: str) -> list[re.Match[str]]:
    return list(LINE.finditer(text))


def wait_until(predicate, timeout: float = 15.0, message: str = "") -> None:  # type: ignore[no-untyped-def]
    wait_for(predicate, timeout, message)


def served_ok(text: str, path: str = "/echo") -> int:
    return sum(1 for m in access_lines(text) if m.group(5) == path and m.group(7) == "200")


def get(server: Server, path: str) -> int:
    status, _, _ = server.get(path)
    return status


def test_lines_have_the_format_of_the_log(server: Server) -> None:
    started = time.time()
    for number in range(5):
        assert get(server, f"/echo?n={number}") == 200
    wait_until(lambda: len(access_lines(server.log())) == 5, message=server.log())
    text = server.log()
    workers = {int(pid) for pid in re.findall(r"spawned http worker #\d pid=(\d+)", text)}
    pids = workers or {server.proc.pid}  # threaded mode: the server's own process
    for match in access_lines(text):
        stamp = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
        assert started - 1 <= stamp <= time.time()
        assert int(match.group(2)) in pids
        assert match.group(3, 4, 6, 7) == ("127.0.0.1", "GET", "HTTP/1.1", "200")
    # In any order: a thread logs its request after the response, which the next may beat.
    assert sorted(m.group(5) for m in access_lines(text)) == [f"/echo?n={n}" for n in range(5)]
    # The other lines, written by logging, begin the same way.
    assert re.search(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ INFO prefork\.\w+: HTTP "
        r"service running",
        text,
        re.M,
    )


@pytest.mark.parametrize("mode", ["workers", "threaded", "workers, logfile"])
def test_a_graceful_stop_under_load_loses_no_line(
    server_factory: ServerFactory, tmp_path: Path, mode: str
) -> None:
    args = [*APP, *MODES["threaded" if mode == "threaded" else "workers"]]
    logfile = tmp_path / "prefork.log"
    if "logfile" in mode:
        args += ["--logfile", str(logfile)]
    server = server_factory.start(*args, wait="logfile" not in mode)
    if "logfile" in mode:
        wait_until(
            lambda: logfile.exists() and "HTTP service running on" in logfile.read_text(),
            message=server.log(),
        )
        server.port = int(re.findall(r"HTTP service running on \S+:(\d+)", logfile.read_text())[0])
    with Load(server.port, clients=3, keep_alive=True) as load:
        wait_until(lambda: load.result.ok > 300)
        server.signal(signal.SIGTERM)  # while lines wait in the buffers
        assert server.proc.wait(30) == 0
    text = logfile.read_text() if "logfile" in mode else server.log()
    assert re.search(r"INFO prefork\.(master|server): (master )?stopped", text), text[-2000:]
    assert served_ok(text) == load.result.ok, load.result


def test_a_recycle_by_limit_request_loses_no_line(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--limit-request", "100")
    with Load(server.port, clients=2, keep_alive=True) as load:
        wait_until(lambda: len(load.result.pids) >= 4, 60)  # three recycles under load
    assert load.result.failed == 0, load.result.errors
    # A successor serves before its predecessor has finished: the third exit may come later.
    wait_until(lambda: len(re.findall(r"exited: request-limit", server.log())) >= 3, 10)
    wait_until(lambda: served_ok(server.log()) >= load.result.ok, 10)
    assert served_ok(server.log()) == load.result.ok
    assert server.stop() == 0
    assert served_ok(server.log()) == load.result.ok


def test_a_reload_by_hup_loses_no_line(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    old = _http_workers(server)
    with Load(server.port, clients=3, keep_alive=True) as load:
        wait_until(lambda: load.result.ok > 200)
        server.signal(signal.SIGHUP)
        server.wait_log(r"reload: 2 new worker\(s\) ready")
        wait_until(lambda: not old & _http_workers(server), 15, server.log())
        served = load.result.ok
        wait_until(lambda: load.result.ok > served + 200)
    assert load.result.failed == 0, load.result.errors
    assert len(re.findall(r"http worker #\d \(pid \d+\) exited: reload", server.log())) == 2
    wait_until(lambda: served_ok(server.log()) >= load.result.ok, 10)
    assert served_ok(server.log()) == load.result.ok
    assert server.stop() == 0
    assert served_ok(server.log()) == load.result.ok


def _http_workers(server: Server) -> set[int]:
    """The pids of the master's HTTP workers (from their process titles)."""
    pids = set()
    for child in psutil.Process(server.proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "http worker" in child.cmdline()[0]:
                pids.add(child.pid)
        except (psutil.Error, IndexError):
            continue  # exited meanwhile
    return pids


def test_a_request_a_limit_stopped_is_logged_by_the_leaving_worker(
    server_factory: ServerFactory,
) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--limit-time-real", "2")
    conn = server.http(timeout=30)
    for number in range(5):  # kept in the buffer: the next request follows at once
        conn.request("GET", f"/echo?before={number}")
        conn.getresponse().read()
    conn.request("GET", "/sleep?s=30")
    assert conn.getresponse().status == 504  # the worker answers, then leaves at once
    conn.close()
    server.wait_log(r"exited: real-time")
    wait_until(lambda: len(access_lines(server.log())) == 6, 10, server.log())
    assert '"GET /sleep?s=30 HTTP/1.1" 504' in server.log()


def test_a_recycle_by_memory_loses_no_line(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--limit-memory-soft", "100M")
    conn = server.http(timeout=30)
    for number in range(5):
        conn.request("GET", f"/echo?before={number}")
        conn.getresponse().read()
    conn.request("GET", "/mem?mb=150&keep=1")  # then the worker recycles itself at once
    assert conn.getresponse().status == 200
    conn.close()
    server.wait_log(r"exited: memory-soft")
    wait_until(lambda: len(access_lines(server.log())) == 6, 10, server.log())
    assert '"GET /mem?mb=150&keep=1 HTTP/1.1" 200' in server.log()


def test_a_worker_killed_mid_request_has_written_the_lines_before(
    server_factory: ServerFactory,
) -> None:
    """A request running long gets the buffer written (by the rebalancer thread): a kill
    (limit_time_real's SIGKILL, the OOM killer) loses at most that request's own line."""
    server = server_factory.start(*APP, "--workers", "1")
    conn = server.http(timeout=30)
    for number in range(5):
        conn.request("GET", f"/echo?before={number}")
        worker = json.loads(conn.getresponse().read())["pid"]
    conn.request("GET", "/sleep?s=30")
    time.sleep(1.0)  # the request runs
    os.kill(worker, signal.SIGKILL)
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.getresponse()
    conn.close()
    server.wait_log(r"exited: (killed|crash)")
    assert len(access_lines(server.log())) == 5, server.log()


@pytest.mark.parametrize("mode", list(MODES))
def test_lines_appear_while_the_server_idles(server_factory: ServerFactory, mode: str) -> None:
    server = server_factory.start(*APP, *MODES[mode])
    for number in range(20):
        assert get(server, f"/echo?idle={number}") == 200
    # Written once the server idles (or within a second): a generous deadline, no timing.
    wait_until(lambda: len(access_lines(server.log())) == 20, 10, server.log())
    assert server.proc.poll() is None


@pytest.mark.parametrize("option", ["--no-access-log", "--log-level=warning"])
def test_no_line_when_off(server_factory: ServerFactory, option: str) -> None:
    port = free_port()  # the line that says where it listens is INFO
    server = server_factory.start(*APP, "--workers", "2", option, "-p", str(port), wait=False)
    server.port = port
    wait_until(lambda: _answers(server), 20, server.log())
    for _ in range(10):
        assert get(server, "/echo") == 200
    assert server.stop() == 0
    assert "prefork.access" not in server.log()


def _answers(server: Server) -> bool:
    try:
        return get(server, "/health-probe") == 200
    except OSError:
        return False


def test_a_logging_configuration_of_the_app_is_honoured(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    own = tmp_path / "own-access.log"
    server = server_factory.start(
        "--app",
        "tests.apps.access_logging:app",
        "--max-cron-threads",
        "0",
        "--workers",
        "1",
        env={"ACCESS_LOG_FILE": str(own)},
    )
    for _ in range(10):
        assert get(server, "/") == 200
    assert server.stop() == 0
    assert len(access_lines(server.log())) == 10  # propagated to prefork's handler
    assert own.read_text().count("ACCESS ") == 10  # and the application's own handler
