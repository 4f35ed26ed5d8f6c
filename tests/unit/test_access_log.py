"""The buffered access log's writer in-process: line format, buffering, pipes, threads,
failing writes, and how it joins the logging configuration."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

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

LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d{3} (\d+) INFO prefork\.access: "
    r'(\S+) - "(\S+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+) \d+\.\d{3}$',
    re.M,
)


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
        access_state[0],
        access_state[2],
        access_state[3],
    )
    access.setLevel(access_state[1])
    logs._installed = installed


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


@pytest.mark.parametrize(
    "created", [1764633600.0, 1764633600.0004, 1764633600.5, 1764633600.9996, 1764719999.123456]
)
def test_a_line_is_what_logging_wrote(log_file: tuple[Path, int], created: float) -> None:
    path, fd = log_file
    log = writer(fd, Clock(created))
    log.write(*ARGS)
    log.close()
    assert path.read_text() == logging_line(created, 4242) + "\n"


def test_the_timestamp_follows_the_clock_across_seconds(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    clock = Clock(1764633600.75)
    log = writer(fd, clock)
    expected = []
    for step in (0.0, 0.2, 0.3, 1.0, 61.05, -30.0, 3600.999):  # and once backwards
        clock.now += step
        log.write(*ARGS)
        expected.append(logging_line(clock.now, 4242))
    log.close()
    assert path.read_text().splitlines() == expected


def test_lines_wait_in_the_buffer_until_it_is_full(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    log = writer(fd, Clock(1000.0), buffer_size=1000)
    line_size = len(logging_line(1000.0, 4242)) + 1
    for _ in range(1000 // line_size):
        log.write(*ARGS)
    assert path.read_text() == "" and log.pending == 1000 // line_size
    log.write(*ARGS)  # past 1000 bytes: one write of them all
    assert log.pending == 0
    assert path.read_text().count("\n") == 1000 // line_size + 1
    log.close()


def test_written_when_idle_and_at_least_every_interval(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    clock = Clock(1000.0)
    log = writer(fd, clock, interval=1.0)
    log.write(*ARGS)
    log.after_turn()  # the first turn writes what came since the start
    assert log.pending == 0
    assert log.timeout(1.0) == 1.0  # nothing waits: the loop may sleep a whole TICK

    clock.now += 0.01
    log.write(*ARGS)
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
        log.write(*ARGS)
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


def test_a_failing_write_drops_lines_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # EPIPE (Python ignores SIGPIPE)
    log = writer(write_end, Clock(1000.0))
    with caplog.at_level(logging.WARNING, logger="prefork"):
        for _ in range(3):
            log.write(*ARGS)
            log.flush()
    log.close()
    warnings = [r.getMessage() for r in caplog.records if "access log" in r.getMessage()]
    assert len(warnings) == 1 and "1 line(s) lost" in warnings[0]


def test_shutdown_writes_every_open_log(log_file: tuple[Path, int]) -> None:
    path, fd = log_file
    log = writer(fd, Clock(1000.0))
    log.write(*ARGS)
    access_log.shutdown()
    assert path.read_text().count("\n") == 1
    log.close()


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
@pytest.mark.parametrize(
    "change", ["own handler", "no propagation", "filter", "root handler", "other format"]
)
def test_another_logging_configuration_goes_through_logging(tmp_path: Path, change: str) -> None:
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
