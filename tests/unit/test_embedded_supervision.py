"""The master's supervision of the embedded PostgreSQL, in-process with a fake server:
deaths in a row back off up to a minute; a failed start is retried and alerted."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prefork.servers.embedded_supervisor import CHECK_INTERVAL, STABLE_AFTER, EmbeddedSupervisor


class FakeServer:
    """What the supervisor uses of EmbeddedPostgres; `pid` None: not running."""

    def __init__(self) -> None:
        self.pid: int | None = 100
        self.spawned = 0
        self.pgdata = Path("/nonexistent/postgres")
        self.log_file = self.pgdata / "log"

    def postmaster_pid(self) -> int | None:
        return self.pid

    def death_reason(self, log_offset: int) -> str:
        return "killed"

    def log_size(self) -> int:
        return 0

    def log_since(self, offset: int) -> str:
        return "FATAL: no"

    def spawn_start(self) -> subprocess.Popen[bytes]:
        self.spawned += 1
        return FakeStarter(1000 + self.spawned)  # type: ignore[return-value]


class FakeStarter:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None


def supervisor_of(server: FakeServer) -> EmbeddedSupervisor:
    return EmbeddedSupervisor(server, 300)  # type: ignore[arg-type]


def test_deaths_in_a_row_wait_twice_as_long_each_time_up_to_a_minute() -> None:
    server = FakeServer()
    supervisor = supervisor_of(server)
    now = 1000.0
    assert supervisor.poll(now) == []
    delays = []
    for _ in range(8):
        server.pid = None
        now += CHECK_INTERVAL
        events = supervisor.poll(now)
        assert [event for event, _ in events] == ["raised"]
        delays.append(supervisor._start_at - now)
        assert supervisor.poll(supervisor._start_at - 0.01) == []  # not before its time
        now = supervisor._start_at
        supervisor.poll(now)
        assert supervisor.owns(1000 + server.spawned)
        server.pid = 200 + server.spawned
        assert [event for event, _ in supervisor.reaped(0, now)] == ["cleared"]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    assert supervisor.restarts == 8 and supervisor.state()["restarts"] == 8
    # Up for a minute: the next death waits the first delay again.
    supervisor.poll(now + STABLE_AFTER)
    server.pid = None
    supervisor.poll(now + STABLE_AFTER + CHECK_INTERVAL)
    assert supervisor._start_at - (now + STABLE_AFTER + CHECK_INTERVAL) == 1


def test_a_failed_start_is_retried_and_the_alert_stays_until_it_runs() -> None:
    server = FakeServer()
    supervisor = supervisor_of(server)
    server.pid = None
    assert supervisor.poll(0.0)[0][1].kind == "database-down"
    supervisor.poll(1.0)
    assert supervisor.reaped(1 << 8, 1.0) == []  # pg_ctl exit status 1
    assert supervisor.phase == "waiting" and supervisor.alert is not None
    assert supervisor._start_at == 3.0
    server.pid = 300  # started by someone else meanwhile: adopted, not started twice
    assert [event for event, _ in supervisor.poll(3.0)] == ["cleared"]
    assert server.spawned == 1 and supervisor.pid == 300 and supervisor.restarts == 0
