"""Multi-processing mode with real processes and real signals."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import PREFORK, ROOT, Server, ServerFactory
from tests.integration.load import Load

# These tests are about HTTP workers; cron workers (tests/integration/test_cron.py) would only add
# processes to count and connections to open.
APP = ("--app", "tests.apps.testapp:app", "--max-cron-threads", "0")


def workers_of(server: Server) -> list[psutil.Process]:
    workers = []
    for child in psutil.Process(server.proc.pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "http worker" in child.cmdline()[0]:
                workers.append(child)
        except (psutil.Error, IndexError):
            continue  # exited between the listing and the look
    return workers


def wait_for(predicate, timeout: float = 10.0, message: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(message or "condition never became true")


def wait_workers(server: Server, count: int, timeout: float = 10.0) -> list[psutil.Process]:
    wait_for(
        lambda: len(workers_of(server)) == count,
        timeout,
        f"expected {count} workers; log:\n{server.log()}",
    )
    return workers_of(server)


def get(server: Server, path: str, timeout: float = 30) -> tuple[int, bytes]:
    conn = server.http(timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_processes_are_master_plus_workers_with_titles(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "3", "--max-cron-threads", "2")
    workers = wait_workers(server, 3)
    master = psutil.Process(server.proc.pid)
    assert master.cmdline()[0] == "prefork: master"
    titles = sorted(p.cmdline()[0] for p in workers)
    assert titles == [
        "prefork: http worker #1",
        "prefork: http worker #2",
        "prefork: http worker #3",
    ]
    wait_for(lambda: len(master.children()) == 6)
    others = sorted(p.cmdline()[0] for p in master.children() if p not in workers)
    assert others == [
        "prefork: cron worker #1",
        "prefork: cron worker #2",
        f"prefork: realtime :{server.realtime_port}",
    ]


def test_workers_serve_in_parallel_processes(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    results: list[dict[str, float]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(json.loads(get(server, "/sleep?s=1&report=1")[1]))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = sorted(results, key=lambda r: r["start"])
    assert first["pid"] != second["pid"]
    assert second["start"] < first["end"], "the two requests must run at the same time"


def test_ab_against_four_workers_has_no_failed_request(server_factory: ServerFactory) -> None:
    ab = shutil.which("ab")
    if ab is None:
        pytest.skip("ab (apache2-utils) is not installed; .ci/run installs it")
    server = server_factory.start(*APP, "--workers", "4", "--no-access-log")
    wait_workers(server, 4)
    out = subprocess.run(
        [ab, "-n", "100", "-c", "10", f"http://127.0.0.1:{server.port}/echo"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert re.search(r"Complete requests:\s+100\b", out), out
    assert re.search(r"Failed requests:\s+0\b", out), out


def test_memory_soft_limit_delivers_then_recycles(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        *APP, "--workers", "1", "--limit-memory-soft", "100M", "--limit-memory-hard", "600M"
    )
    (first,) = wait_workers(server, 1)
    with Load(server.port, clients=2) as load:
        status, body = get(server, "/mem?mb=150&keep=1")
        assert (status, body) == (200, b"allocated 150 MiB")  # between soft and hard: served
        match = server.wait_log(
            r"http worker #1 \(pid (\d+)\) exited: memory-soft, RSS "
            r"[\d.]+ MiB > limit 100\.0 MiB, request 'GET /mem\?mb=150&keep=1 "
            r"HTTP/1\.1'"
        )
        assert int(match.group(1)) == first.pid
        wait_for(lambda: [p.pid for p in workers_of(server)] not in ([], [first.pid]))
        time.sleep(0.5)
    assert load.result.failed == 0, load.result.errors


KILLED_MID_REQUEST = {
    "memory-hard": (
        ("--limit-memory-soft", "100M", "--limit-memory-hard", "300M"),
        "/mem?mb=700&keep=1",
        r"exited: memory-hard, RSS [\d.]+ MiB > limit 300\.0 MiB, request "
        r"'GET /mem\?mb=700&keep=1 HTTP/1\.1'",
    ),
    "cpu-time": (
        ("--limit-time-cpu", "1"),
        "/burn?s=10",
        r"exited: cpu-time, CPU time above limit 1s, request 'GET /burn\?s=10 "
        r"HTTP/1\.1'",
    ),
    "real-time": (
        ("--limit-time-real", "2"),
        "/sleep?s=30",
        r"exited: real-time, request running 2\.\d+s > limit 2s, request "
        r"'GET /sleep\?s=30 HTTP/1\.1'",
    ),
}


@pytest.mark.parametrize("reason", list(KILLED_MID_REQUEST))
def test_limit_stops_the_worker_mid_request(server_factory: ServerFactory, reason: str) -> None:
    """The client of the runaway request gets the limit's error
    (tests/integration/test_limit_answers.py); the others, nothing."""
    flags, path, logged = KILLED_MID_REQUEST[reason]
    server = server_factory.start(*APP, "--workers", "2", *flags)
    wait_workers(server, 2)
    with Load(server.port, clients=2) as load:
        status, _ = get(server, path)
        assert status == (503 if reason == "memory-hard" else 504)
        server.wait_log(r"http worker #\d \(pid \d+\) " + logged)
        wait_workers(server, 2)
    assert load.result.failed == 0, load.result.errors
    assert load.result.ok > 0


def test_sudden_allocation_hits_the_kernel_backstop(server_factory: ServerFactory) -> None:
    server = server_factory.start(
        *APP, "--workers", "1", "--limit-memory-soft", "100M", "--limit-memory-hard", "200M"
    )
    wait_workers(server, 1)
    status, _ = get(server, "/mem?mb=4000")  # one allocation past 2 x hard + 512M
    assert status == 500
    server.wait_log(
        r"exited: memory-hard, an allocation failed under the address-space "
        r"backstop"
    )
    assert "MemoryError" in server.log()
    wait_workers(server, 1)
    assert get(server, "/echo")[0] == 200


def test_request_limit_recycles_gracefully(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1", "--limit-request", "20")
    wait_workers(server, 1)
    with Load(server.port, clients=2) as load:
        wait_for(lambda: len(load.result.pids) >= 4, 30)
    assert load.result.failed == 0, load.result.errors
    log = server.log()
    assert re.search(r"exited: request-limit, served 2[0-2] requests", log)
    # The successor is started while the retiring worker serves on: the k-th recycle's
    # exit comes after the k-th replacement's spawn (the first spawn is the first worker).
    events = re.findall(r"spawned http worker|exited: request-limit", log)
    spawned = 0
    for event in events:
        if event.startswith("spawned"):
            spawned += 1
        else:
            assert spawned >= 2, events
            spawned -= 1


def test_crash_during_a_request_is_replaced_quickly(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        get(server, "/crash")
    exited = server.wait_log(
        r"(\d\d:\d\d:\d\d,\d{3}) \d+ ERROR prefork.master: http worker "
        r"#(\d) \(pid \d+\) exited: crash, exit code 7, request 'GET /crash"
    )
    spawned = server.wait_log(
        rf"(\d\d:\d\d:\d\d,\d{{3}}) \d+ INFO prefork.master: spawned "
        rf"http worker #{exited.group(2)} pid=\d+\n(?![\s\S]*exited: crash)"
    )
    gap = _seconds(spawned.group(1)) - _seconds(exited.group(1))
    assert 0 <= gap < 1.0, f"replacement took {gap:.3f}s"
    wait_workers(server, 2)


def _seconds(stamp: str) -> float:
    hours, minutes, rest = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest.replace(",", "."))


def test_boot_failure_backs_off_then_exits_3(server_factory: ServerFactory) -> None:
    server = server_factory.start("--app", "tests.apps.broken:app", "--workers", "2")
    assert server.proc.wait(30) == 3
    log = server.log()
    assert log.count("worker failed to start (") == 4
    assert "workers failed to start 5 times in a row; giving up" in log
    assert "RuntimeError: this application is broken on purpose" in log


def test_term_lets_in_flight_requests_finish(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    results: list[tuple[int, bytes]] = []
    thread = threading.Thread(target=lambda: results.append(get(server, "/sleep?s=1.5")))
    thread.start()
    time.sleep(0.5)
    server.signal(signal.SIGTERM)
    thread.join(10)
    assert results == [(200, b"slept")]
    assert server.proc.wait(10) == 0
    assert "master stopped" in server.log()


def test_second_term_forces(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1")
    wait_workers(server, 1)
    thread = threading.Thread(target=lambda: _ignore_errors(get, server, "/sleep?s=30"))
    thread.start()
    time.sleep(0.5)
    server.signal(signal.SIGTERM)
    server.wait_log("stopping gracefully")
    server.signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    # The HTTP worker, and the realtime process if it has not finished closing yet.
    assert re.search(r"killing [12] worker\(s\) now", server.log())
    thread.join(10)


def _ignore_errors(function: Callable[..., object], *args: object) -> object:
    try:
        return function(*args)
    except (OSError, http.client.HTTPException):
        return None


@pytest.mark.parametrize("keep_alive", [False, True], ids=["new-connections", "keep-alive"])
def test_hup_replaces_every_worker_without_a_failed_request(
    server_factory: ServerFactory, keep_alive: bool
) -> None:
    server = server_factory.start(*APP, "--workers", "3", "--no-access-log")
    old = {p.pid for p in wait_workers(server, 3)}
    with Load(server.port, clients=6, keep_alive=keep_alive) as load:
        wait_for(lambda: load.result.ok > 200)
        server.signal(signal.SIGHUP)
        # the 3 HTTP workers and the realtime process
        server.wait_log(r"reload: 3 new worker\(s\) ready, 4 old process\(es\) stopping")
        wait_for(lambda: not old & {p.pid for p in workers_of(server)}, 15)
        served = load.result.ok
        wait_for(lambda: load.result.ok > served + 200)
    assert load.result.failed == 0, load.result.errors
    assert len(workers_of(server)) == 3


def test_hup_logs_only_the_warnings_it_has_not_logged(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """An odoo.conf's ignored keys warn at the start; a HUP repeats none of them, only what
    the edited file adds."""
    conf = tmp_path / "odoo.conf"
    conf.write_text("[options]\naddons_path = /opt/odoo/addons\n")
    server = server_factory.start(*APP, "--workers", "1", "-c", str(conf))
    wait_workers(server, 1)
    conf.write_text("[options]\naddons_path = /opt/odoo/addons\nscreencasts = /tmp\n")
    server.signal(signal.SIGHUP)
    server.wait_log(r"Odoo option 'screencasts' is ignored")
    server.wait_log(r"reload: 1 new worker\(s\) ready")
    assert server.log().count("Odoo option 'addons_path' is ignored") == 1


def test_ttin_and_ttou_change_the_worker_count(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    # One signal at a time: POSIX merges a signal sent while the same one is pending.
    server.signal(signal.SIGTTIN)
    server.wait_log("target is now 3")
    wait_workers(server, 3)
    for sent, expected in ((1, 2), (2, 1), (3, 1)):  # never below one
        server.signal(signal.SIGTTOU)
        wait_for(lambda n=sent: server.log().count("one worker fewer") == n)
        wait_workers(server, expected)


def test_quit_dumps_every_process_stack(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    workers = wait_workers(server, 2)
    server.signal(signal.SIGQUIT)
    for worker in workers:
        server.wait_log(
            rf"--- stack of prefork http worker #\d \(pid {worker.pid}\) ---\n"
            r"(Current thread|Thread)"
        )
    server.wait_log(rf"--- stack of prefork master \(pid {server.proc.pid}\) ---")
    assert len(workers_of(server)) == 2


def test_usr2_upgrades_without_a_failed_request(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    pidfile = tmp_path / "master.pid"
    server = server_factory.start(
        *APP, "--workers", "2", "--no-access-log", "--pidfile", str(pidfile)
    )
    wait_workers(server, 2)
    try:
        with Load(server.port, clients=4) as load:
            wait_for(lambda: load.result.ok > 100)
            server.signal(signal.SIGUSR2)
            assert server.proc.wait(30) == 0  # the old master drained and left
            new_master = int(pidfile.read_text())
            assert new_master != server.proc.pid
            served = load.result.ok
            wait_for(lambda: load.result.ok > served + 100)
        assert load.result.failed == 0, load.result.errors
        assert psutil.Process(new_master).cmdline()[0] == "prefork: master"
        # The realtime socket went over too, to the new realtime process only.
        realtime = f"http://127.0.0.1:{server.realtime_port}/"
        wait_for(
            lambda: (
                "prefork: realtime"
                in " ".join(" ".join(p.cmdline()) for p in psutil.Process(new_master).children())
            )
        )
        for _ in range(10):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(realtime, timeout=10)
            assert b"the realtime port serves" in answer.value.read()
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            wait_for(lambda: not pidfile.exists(), 15)


def test_sigkill_of_a_worker_loses_at_most_its_request(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "3", "--no-access-log")
    victim = wait_workers(server, 3)[1]
    with Load(server.port, clients=4) as load:
        wait_for(lambda: load.result.ok > 100)
        victim.kill()
        server.wait_log(rf"\(pid {victim.pid}\) exited: crash, killed by signal SIGKILL")
        wait_workers(server, 3)
        served = load.result.ok
        wait_for(lambda: load.result.ok > served + 100)
    assert load.result.failed <= 1, load.result.errors


def test_slow_clients_do_not_starve_a_single_worker(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "1")
    wait_workers(server, 1)
    slow = [server.connect() for _ in range(30)]
    for sock in slow:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: slow\r\n")  # never finished
    started = time.monotonic()
    assert get(server, "/echo")[0] == 200
    assert time.monotonic() - started < 2
    for sock in slow:
        sock.close()


def test_preload_imports_the_app_once_in_the_master(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    imports = tmp_path / "imports.txt"
    env = {"TESTAPP_IMPORT_LOG": str(imports)}
    server = server_factory.start(
        "--app",
        "tests.apps.preloaded:app",
        "--workers",
        "3",
        "--preload-app",
        "--max-cron-threads",
        "0",
        env=env,
    )
    wait_workers(server, 3)
    assert get(server, "/echo")[0] == 200
    assert imports.read_text().split() == [str(server.proc.pid)]
    # Without preloading every worker imports the app (cron workers too: none here).
    lazy = server_factory.start(
        "--app",
        "tests.apps.preloaded:app",
        "--workers",
        "2",
        "--max-cron-threads",
        "0",
        env={"TESTAPP_IMPORT_LOG": str(tmp_path / "lazy.txt")},
    )
    pids = {p.pid for p in wait_workers(lazy, 2)}
    wait_for(lambda: len((tmp_path / "lazy.txt").read_text().split()) == 2)
    assert {int(p) for p in (tmp_path / "lazy.txt").read_text().split()} == pids


def test_preloaded_heap_stays_shared_through_a_full_collection(
    server_factory: ServerFactory,
) -> None:
    # The app holds ~40 MB of objects the collector tracks. A worker's full collection
    # would write to every one of them (copying each page from the master) unless they
    # reached it frozen: its private memory then stays a few MB.
    server = server_factory.start(
        "--app",
        "tests.apps.bigheap:app",
        "--workers",
        "1",
        "--preload-app",
        "--max-cron-threads",
        "0",
    )
    wait_workers(server, 1)
    status, body = get(server, "/collect")
    assert status == 200
    assert int(body) < 20 << 20, f"worker USS {int(body) >> 20} MiB after gc.collect()"


def test_a_signal_sent_to_a_newborn_worker_waits_for_its_handler() -> None:
    # The master stopping right after a fork sends SIGTERM before the child has its own
    # handler: the child must still see it (it used to run on, and the master waited out
    # its whole grace period).
    from prefork.servers.worker_proc import fork_worker
    from prefork.workers.process import prepare_process

    pid = fork_worker()
    if pid == 0:  # the child: nothing here may return into pytest
        try:
            time.sleep(0.3)  # the SIGTERM arrives meanwhile
            seen: list[int] = []
            prepare_process("test child", lambda signum, frame: seen.append(signum), 0)
            os._exit(0 if seen == [signal.SIGTERM] else 1)
        finally:
            os._exit(2)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, os.waitstatus_to_exitcode(status)


def test_status_shows_processes_and_exits(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory.start(*APP, "--workers", "2", "--limit-request", "5")
    wait_workers(server, 2)
    for _ in range(12):
        get(server, "/echo")
    server.wait_log("exited: request-limit")
    thread = threading.Thread(target=lambda: get(server, "/sleep?s=2.5"))
    thread.start()
    time.sleep(1.5)
    command = [PREFORK, "status", "-p", "0", "--data-dir", str(tmp_path / "data")]
    text = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30)
    thread.join()
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert f"master pid {server.proc.pid}" in out
    # The worker running it may be past its limit (retiring, then stopping): it serves on.
    assert re.search(
        r"http worker #\d +\d+ +(ready|retiring|stopping) +[\d.]+ MiB +[\d.]+ +"
        r"\d+ +\d+s +"
        r"GET /sleep\?s=2\.5 HTTP/1\.1 \(\d\.\ds\)",
        out,
    ), out
    assert "request-limit, served" in out
    as_json = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    state = json.loads(as_json.stdout)
    # A worker that served /sleep past its limit may still be listed beside its successor.
    roles = sorted({process["role"] for process in state["processes"]})
    assert roles == ["http worker #1", "http worker #2", "realtime process"], roles
    assert state["exits"]
    server.stop()
    gone = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert gone.returncode == 1 and "no running master" in gone.stderr


def test_a_long_request_hands_its_workers_other_clients_over(server_factory: ServerFactory) -> None:
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    connections: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(6):  # two workers, six connections: one worker holds at least two
        conn = server.http()
        conn.request("GET", "/echo")
        connections.setdefault(json.loads(conn.getresponse().read())["pid"], []).append(conn)
    busy_pid, (slow, waiting, *_) = next((p, c) for p, c in connections.items() if len(c) > 1)
    slow.request("GET", "/sleep?s=3&report=1")
    thread = threading.Thread(target=lambda: slow.getresponse().read())
    thread.start()
    time.sleep(0.3)
    waiting.request("GET", "/echo")
    response = json.loads(waiting.getresponse().read())
    assert thread.is_alive(), "answered only after the long request: it was not handed over"
    assert response["pid"] != busy_pid
    thread.join(10)
    for conns in connections.values():
        for conn in conns:
            conn.close()


def _connections_by_worker(server: Server, count: int) -> dict[int, list[socket.socket]]:
    """`count` keep-alive connections, each having served one request, by worker pid."""
    by_pid: dict[int, list[socket.socket]] = {}
    for _ in range(count):
        sock = server.connect(timeout=10)
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        (response,) = _responses(sock, 1)
        by_pid.setdefault(json.loads(response)["pid"], []).append(sock)
    return by_pid


def _responses(sock: socket.socket, count: int) -> list[bytes]:
    """The bodies of the next `count` responses on `sock` (Content-Length framed)."""
    data, bodies = b"", list[bytes]()
    while len(bodies) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            length = int(re.search(rb"Content-Length: (\d+)", data[:head_end]).group(1))  # type: ignore[union-attr]
            if len(data) >= head_end + 4 + length:
                bodies.append(data[head_end + 4 : head_end + 4 + length])
                data = data[head_end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(bodies)} responses"
        data += chunk
    return bodies


def test_a_request_partly_read_by_a_busy_worker_is_served_by_another(
    server_factory: ServerFactory,
) -> None:
    """A worker that has read the start of a request on one connection, then begins a long
    request on another, passes the first connection on with the bytes it read: another
    worker answers it while the long request runs."""
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    by_pid = _connections_by_worker(server, 6)
    busy_pid, (slow, partial, *_) = next((p, c) for p, c in by_pid.items() if len(c) > 1)
    partial.sendall(b"GET /echo?n=1 HTTP/1.1\r\nHost: t\r\n")  # the head, without its end
    time.sleep(0.3)  # read by the busy worker's loop, which holds it in its parser
    slow.sendall(b"GET /sleep?s=3&report=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.5)
    partial.sendall(b"X-Rest: 1\r\n\r\n")
    answer = json.loads(_responses(partial, 1)[0])
    assert answer["pid"] != busy_pid and answer["query"] == "n=1"
    assert ["X-REST", "1"] in answer["headers"]  # the head was put together whole
    slow.settimeout(0)
    with pytest.raises(BlockingIOError):  # the long request is still running
        slow.recv(1)
    slow.settimeout(10)
    assert json.loads(_responses(slow, 1)[0])["pid"] == busy_pid
    for conns in by_pid.values():
        for sock in conns:
            sock.close()


def test_pipelined_requests_behind_a_long_one_keep_their_order(
    server_factory: ServerFactory,
) -> None:
    """Requests pipelined behind a long one stay on its worker and are answered in order,
    while the worker's other clients are served elsewhere."""
    server = server_factory.start(*APP, "--workers", "2")
    wait_workers(server, 2)
    by_pid = _connections_by_worker(server, 6)
    busy_pid, (pipelined, other, *_) = next((p, c) for p, c in by_pid.items() if len(c) > 1)
    pipelined.sendall(
        b"GET /sleep?s=2&report=1 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /echo?n=2 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /echo?n=3 HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    time.sleep(0.3)
    other.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
    assert json.loads(_responses(other, 1)[0])["pid"] != busy_pid
    first, second, third = (json.loads(body) for body in _responses(pipelined, 3))
    assert first["pid"] == second["pid"] == third["pid"] == busy_pid
    assert (second["query"], third["query"]) == ("n=2", "n=3")
    for conns in by_pid.values():
        for sock in conns:
            sock.close()


def test_keep_alive_clients_spread_over_a_new_worker(server_factory: ServerFactory) -> None:
    """A worker added (or replacing a recycled one) gets its share of the clients that
    keep their connections: the master asks the busiest worker to hand some over."""
    server = server_factory.start(*APP, "--workers", "1")
    wait_workers(server, 1)
    connections = [server.http() for _ in range(8)]

    def spread() -> dict[int, int]:
        per_worker: dict[int, int] = {}
        for conn in connections:
            conn.request("GET", "/echo")
            pid = json.loads(conn.getresponse().read())["pid"]
            per_worker[pid] = per_worker.get(pid, 0) + 1
        return per_worker

    assert len(spread()) == 1
    os.kill(server.proc.pid, signal.SIGTTIN)
    wait_workers(server, 2)
    seen: list[dict[int, int]] = []

    def even() -> bool:
        seen.append(spread())
        return sorted(seen[-1].values()) == [4, 4]

    wait_for(even, 10, f"connections never spread evenly: {seen[-5:]}")
    for conn in connections:
        conn.close()


ACTIVATE = """
import os, socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(16)
print(sock.getsockname()[1], flush=True)
if sock.fileno() != 3:
    os.dup2(sock.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.argv[1], sys.argv[1:])  # the console script, then its arguments
"""


@pytest.mark.usefixtures("database_uri")
def test_systemd_socket_activation(tmp_path: Path) -> None:
    """A socket passed as fd 3 with LISTEN_FDS/LISTEN_PID (as systemd does) is used as is."""
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ACTIVATE,
            PREFORK,
            "run",
            *APP,
            "--workers",
            "2",
            "-p",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        server = Server(proc, tmp_path / "server.log")
        server.port = port
        server.wait_log("using 1 inherited listening socket")
        server.wait_log(rf"HTTP service running on 127\.0\.0\.1:{port}")
        assert get(server, "/echo")[0] == 200
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def test_ipv6_interface(server_factory: ServerFactory) -> None:
    if not socket.has_ipv6 or not _ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    server = server_factory.start(*APP, "--workers", "1", "--http-interface", "::1", wait=False)
    match = server.wait_log(r"HTTP service running on \[::1\]:(\d+)")
    conn = http.client.HTTPConnection("::1", int(match.group(1)), timeout=10)
    conn.request("GET", "/echo")
    assert json.loads(conn.getresponse().read())["remote_addr"] == "::1"
    conn.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False
