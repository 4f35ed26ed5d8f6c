"""The buffered access log: the writer itself, and real servers that must lose no line."""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from prefork import access_log, logs
from prefork.access_log import (
    IDLE_WAIT,
    MESSAGE,
    AccessLog,
    BufferedAccessLog,
    _pieces,
    open_access_log,
)
from tests.conftest import MODES, Server, free_port
from tests.load import Load
from tests.test_master import wait_for

APP = ("--app", "tests.apps.testapp:app", "--max-cron-threads", "0")
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3} (\d+) INFO prefork\.access: "
                  r'(\S+) - "(\S+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+) \d+\.\d{3}$', re.M)
ARGS = ("127.0.0.1", "GET", "/shop?page=2", "HTTP/1.1", 200, 1234, 0.0123)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def logging_line(created: float, pid: int, args: tuple[object, ...] = ARGS) -> str:
    """The line `logging` writes for an access record made at `created` by process `pid`."""
    record = logging.LogRecord("prefork.access", logging.INFO, __file__, 1, MESSAGE, args, None)
    record.created = created
    record.msecs = int((created - int(created)) * 1000) + 0.0  # as LogRecord computes it
    record.process = pid
    return logging.Formatter(logs.FORMAT).format(record)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    path = tmp_path / "access.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    yield path, fd


def writer(fd: int, clock: Clock, **options: object) -> BufferedAccessLog:
    return BufferedAccessLog(fd, pid=4242, clock=clock, **options)  # type: ignore[arg-type]


# -- the writer ------------------------------------------------------------------------------

@pytest.mark.parametrize("created", [1764633600.0, 1764633600.0004, 1764633600.5,
                                     1764633600.9996, 1764719999.123456])
def test_a_line_is_what_logging_wrote(log_file: tuple[Path, int], created: float) -> None:
    path, fd = log_file
    log = writer(fd, Clock(created))
    log.write(*ARGS)  # type: ignore[arg-type]
    log.close()
    assert path.read_text() == logging_line(created, 4242) + "\n"


def test_the_timestamp_follows_the_clock_across_seconds(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    clock = Clock(1764633600.75)
    log = writer(fd, clock)
    expected = []
    for step in (0.0, 0.2, 0.3, 1.0, 61.05, -30.0, 3600.999):  # and once backwards
        clock.now += step
        log.write(*ARGS)  # type: ignore[arg-type]
        expected.append(logging_line(clock.now, 4242))
    log.close()
    assert path.read_text().splitlines() == expected


def test_lines_wait_in_the_buffer_until_it_is_full(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    log = writer(fd, Clock(1000.0), buffer_size=1000)
    line_size = len(logging_line(1000.0, 4242)) + 1
    for _ in range(1000 // line_size):
        log.write(*ARGS)  # type: ignore[arg-type]
    assert path.read_text() == "" and log.pending == 1000 // line_size
    log.write(*ARGS)  # type: ignore[arg-type]  # past 1000 bytes: one write of them all
    assert log.pending == 0
    assert path.read_text().count("\n") == 1000 // line_size + 1
    log.close()


def test_written_when_idle_and_at_least_every_interval(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    clock = Clock(1000.0)
    log = writer(fd, clock, interval=1.0)
    log.write(*ARGS)  # type: ignore[arg-type]
    log.after_turn()  # the first turn writes what came since the start
    assert log.pending == 0
    assert log.timeout(1.0) == 1.0  # nothing waits: the loop may sleep a whole TICK

    clock.now += 0.01
    log.write(*ARGS)  # type: ignore[arg-type]
    assert log.timeout(1.0) == IDLE_WAIT  # a line waits: the loop turns soon enough
    clock.now += IDLE_WAIT / 2
    log.after_turn()
    assert log.pending == 1, "a request ended just now: the server is not idle"
    clock.now += IDLE_WAIT
    log.after_turn()
    assert log.pending == 0, "no request ended for IDLE_WAIT: written"

    busy_since = clock.now
    flushed_at = []
    for step in range(1, 251):  # busy for 2.5 s: a request every 10 ms, a turn after each
        clock.now = busy_since + step * 0.01
        log.write(*ARGS)  # type: ignore[arg-type]
        log.after_turn()
        if not log.pending:
            flushed_at.append(clock.now - busy_since)
    log.close()
    # Once a second while busy (the last write was when it began), no more.
    assert len(flushed_at) == 2, flushed_at
    assert flushed_at[0] == pytest.approx(1.0, abs=0.02)
    assert flushed_at[1] == pytest.approx(2.0, abs=0.03)
    assert path.read_text().count("\n") == 2 + 250


def test_pieces_for_a_pipe_end_at_line_ends() -> None:
    lines = [b"x" * size + b"\n" for size in (100, 3000, 900, 5000, 10, 4095, 1)]
    data = b"".join(lines * 3)
    pieces = list(_pieces(data, 4096))
    assert b"".join(pieces) == data
    for piece in pieces:
        assert piece.endswith(b"\n")
        assert len(piece) <= 4096 or piece.count(b"\n") == 1  # a longer line goes alone


def test_to_a_pipe_every_line_arrives_whole() -> None:
    read_end, write_end = os.pipe()
    received = bytearray()
    reader = threading.Thread(target=lambda: _read_all(read_end, received))
    reader.start()
    log = writer(write_end, Clock(1000.0))
    for number in range(3000):
        log.write("127.0.0.1", "GET", f"/{number}", "HTTP/1.1", 200, number, 0.001)
    log.close()  # closes write_end: the reader sees the end
    reader.join(10)
    lines = received.decode().splitlines()
    assert [int(line.split('"GET /')[1].split(" ")[0]) for line in lines] == list(range(3000))


def _read_all(fd: int, into: bytearray) -> None:
    while chunk := os.read(fd, 65536):
        into += chunk
    os.close(fd)


def test_threads_lose_no_line_and_cut_none(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    log = BufferedAccessLog(fd, buffer_size=4096)  # flushed by the threads themselves

    def serve(thread: int) -> None:
        for number in range(2000):
            log.write("127.0.0.1", "GET", f"/{thread}/{number}", "HTTP/1.1", 200, 0, 0.0)

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    flusher_stop = threading.Event()
    flusher = threading.Thread(target=lambda: _flush_until(log, flusher_stop))
    flusher.start()  # the server loop's turns, meanwhile
    for thread in threads:
        thread.join(30)
    flusher_stop.set()
    flusher.join(10)
    log.close()
    lines = path.read_text().splitlines()
    assert all(LINE.match(line) for line in lines)
    targets = sorted(line.split('"GET ')[1].split(" ")[0] for line in lines)
    assert targets == sorted(f"/{t}/{n}" for t in range(8) for n in range(2000))


def _flush_until(log: BufferedAccessLog, stop: threading.Event) -> None:
    while not stop.is_set():
        log.after_turn()
        log.flush()


def test_a_failing_write_drops_lines_and_says_so_once(
        caplog: pytest.LogCaptureFixture) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # EPIPE (Python ignores SIGPIPE)
    log = writer(write_end, Clock(1000.0))
    with caplog.at_level(logging.WARNING, logger="prefork"):
        for _ in range(3):
            log.write(*ARGS)  # type: ignore[arg-type]
            log.flush()
    log.close()
    warnings = [r.getMessage() for r in caplog.records if "access log" in r.getMessage()]
    assert len(warnings) == 1 and "1 line(s) lost" in warnings[0]


def test_shutdown_writes_every_open_log(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    log = writer(fd, Clock(1000.0))
    log.write(*ARGS)  # type: ignore[arg-type]
    access_log.shutdown()
    assert path.read_text().count("\n") == 1
    log.close()


# -- which access log a server gets ----------------------------------------------------------

@pytest.fixture
def logging_state() -> Iterator[None]:
    """setup_logging changes the root logger: put back what pytest had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("prefork.access")
    access_state = (access.handlers[:], access.level, access.propagate, access.disabled)
    installed = logs._installed
    yield
    if logs._installed is not None and logs._installed is not installed:
        logs._installed[0].close()  # the file setup_logging opened
    root.handlers[:] = handlers
    root.setLevel(level)
    access.handlers[:], access.propagate, access.disabled = (
        access_state[0], access_state[2], access_state[3])
    access.setLevel(access_state[1])
    logs._installed = installed


def _close(log: AccessLog | None) -> None:
    if isinstance(log, BufferedAccessLog):
        log.close()


@pytest.mark.usefixtures("logging_state")
def test_prefork_logging_gets_the_buffered_writer(tmp_path: Path) -> None:
    logs.setup_logging("info", str(tmp_path / "prefork.log"))
    log = open_access_log(True)
    assert isinstance(log, BufferedAccessLog)
    _close(log)
    assert open_access_log(False) is None


@pytest.mark.usefixtures("logging_state")
def test_no_line_when_info_is_not_logged(tmp_path: Path) -> None:
    logs.setup_logging("warning", str(tmp_path / "prefork.log"))
    assert open_access_log(True) is None
    installed = logs.installed()
    assert installed is not None
    installed[0].close()
    logs.setup_logging("info", str(tmp_path / "prefork.log"))
    logging.getLogger("prefork.access").disabled = True  # dictConfig's disable_existing_loggers
    assert open_access_log(True) is None


@pytest.mark.usefixtures("logging_state")
@pytest.mark.parametrize("change", ["own handler", "no propagation", "filter", "root handler",
                                    "other format"])
def test_another_logging_configuration_goes_through_logging(tmp_path: Path,
                                                            change: str) -> None:
    logs.setup_logging("info", str(tmp_path / "prefork.log"))
    access = logging.getLogger("prefork.access")
    extra = logging.FileHandler(tmp_path / "access.log")
    if change == "own handler":
        access.addHandler(extra)
    elif change == "no propagation":
        access.propagate = False
        access.addHandler(extra)
    elif change == "filter":
        access.addFilter(lambda record: False)
    elif change == "root handler":
        logging.getLogger().addHandler(extra)
    else:
        logging.getLogger().handlers[0].setFormatter(logging.Formatter("%(message)s"))
    log = open_access_log(True)
    try:
        assert type(log) is AccessLog  # logging's own path, at its cost
    finally:
        access.removeHandler(extra)
        access.filters.clear()
        extra.close()


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
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \d+ INFO prefork\.\w+: HTTP "
                     r"service running", text, re.M)


@pytest.mark.parametrize("mode", ["workers", "threaded", "workers, logfile"])
def test_a_graceful_stop_under_load_loses_no_line(server_factory: type, tmp_path: Path,
                                                  mode: str) -> None:
    args = [*APP, *MODES["threaded" if mode == "threaded" else "workers"]]
    logfile = tmp_path / "prefork.log"
    if "logfile" in mode:
        args += ["--logfile", str(logfile)]
    server = server_factory.start(*args, wait="logfile" not in mode)
    if "logfile" in mode:
        wait_until(lambda: logfile.exists() and "HTTP service running on" in
                   logfile.read_text(), message=server.log())
        server.port = int(re.findall(r"HTTP service running on \S+:(\d+)",
                                     logfile.read_text())[0])
    with Load(server.port, clients=3, keep_alive=True) as load:
        wait_until(lambda: load.result.ok > 300)
        server.signal(signal.SIGTERM)  # while lines wait in the buffers
        assert server.proc.wait(30) == 0
    text = logfile.read_text() if "logfile" in mode else server.log()
    assert re.search(r"INFO prefork\.(master|server): (master )?stopped", text), text[-2000:]
    assert served_ok(text) == load.result.ok, load.result


def test_a_recycle_by_limit_request_loses_no_line(server_factory: type) -> None:
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


def test_a_reload_by_hup_loses_no_line(server_factory: type) -> None:
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
        server_factory: type) -> None:
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


def test_a_recycle_by_memory_loses_no_line(server_factory: type) -> None:
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
        server_factory: type) -> None:
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
def test_lines_appear_while_the_server_idles(server_factory: type, mode: str) -> None:
    server = server_factory.start(*APP, *MODES[mode])
    for number in range(20):
        assert get(server, f"/echo?idle={number}") == 200
    # Written once the server idles (or within a second): a generous deadline, no timing.
    wait_until(lambda: len(access_lines(server.log())) == 20, 10, server.log())
    assert server.proc.poll() is None


@pytest.mark.parametrize("option", ["--no-access-log", "--log-level=warning"])
def test_no_line_when_off(server_factory: type, option: str) -> None:
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


def test_a_logging_configuration_of_the_app_is_honoured(server_factory: type,
                                                        tmp_path: Path) -> None:
    own = tmp_path / "own-access.log"
    server = server_factory.start("--app", "tests.apps.access_logging:app",
                                  "--max-cron-threads", "0", "--workers", "1",
                                  env={"ACCESS_LOG_FILE": str(own)})
    for _ in range(10):
        assert get(server, "/") == 200
    assert server.stop() == 0
    assert len(access_lines(server.log())) == 10  # propagated to prefork's handler
    assert own.read_text().count("ACCESS ") == 10  # and the application's own handler
