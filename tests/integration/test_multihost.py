"""Several hosts on one database (docs/multihost.md), built from network namespaces: a
database host running PostgreSQL and Redis started here, two prefork hosts started through
the installed script (2 HTTP workers, 1 cron worker and the realtime process each, Redis
sessions with one shared session_secret), and nginx in front of both. Sessions, the bus and
cron across the hosts, while one is killed, frozen or drained.

Needs root (namespaces; PostgreSQL runs as the session's unprivileged user), nginx and
redis-server: skipped with the reason otherwise. It uses none of PREFORK_TEST_DSN.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.integration.bus_client import OdooLikeWorker
from tests.integration.conftest import (
    AS_ROOT,
    PREFORK,
    READY_RE,
    ROOT,
    SERVER_BUGS,
    Server,
    embedded_data_dir,
)
from tests.integration.load import Load
from tests.integration.netns import Host, NetnsUnavailable, Network
from tests.integration.test_nginx import NGINX, generate, nginx_conf, nginx_test
from tests.integration.test_sessions import REDIS, cookie_of, request

pytestmark = [
    pytest.mark.skipif(not AS_ROOT, reason="network namespaces need root"),
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)"),
    pytest.mark.skipif(REDIS is None, reason="redis-server is not installed"),
]

HTTP_PORT, REALTIME_PORT, REDIS_PORT, LB_PORT = 8069, 8072, 6379, 80
SECRET = uuid.uuid4().hex  # the one session_secret of both hosts
START_TIMEOUT = 30.0  # seconds a host, PostgreSQL or nginx may take to start, on a busy machine
STOP_TIMEOUT = 15.0


def eventually(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


def listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


# -- the network, the database host and nginx: once for the module ------------------------


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    """Namespaces pf<pid>db, pf<pid>a, pf<pid>b and pf<pid>lb on one bridge."""
    try:
        net = Network(f"pf{os.getpid()}")
    except NetnsUnavailable as exc:
        pytest.skip(str(exc))
    with ExitStack() as stack:
        try:
            stack.enter_context(net)
            for name in ("db", "a", "b", "lb"):
                net.add_host(name)
        except NetnsUnavailable as exc:
            pytest.skip(f"network namespaces are not permitted here: {exc}")
        yield net


def host(net: Network, name: str) -> Host:
    return next(h for h in net.hosts if h.name == name)


@pytest.fixture(scope="module")
def database_host(
    network: Network, embedded_user: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """PostgreSQL (max_connections 100, trust for the test subnet) and Redis on the database
    host; yields the conninfo of its `postgres` database."""
    db = host(network, "db")
    logs = tmp_path_factory.mktemp("database-host")
    with embedded_data_dir(embedded_user, logs / "data") as data:
        postgres = start_postgres(network, db, data / "postgres", logs / "postgres.log")
        redis = network.popen(
            db,
            [
                str(REDIS),
                "--bind",
                db.address,
                "--port",
                str(REDIS_PORT),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(logs),
                "--protected-mode",
                "no",
            ],  # reached from the subnet only
            logs / "redis.log",
        )
        try:
            conninfo = f"host={db.address} user=postgres dbname=postgres connect_timeout=2"
            eventually(
                lambda: accepts(conninfo),
                START_TIMEOUT,
                f"PostgreSQL on {db.address} (its log: {logs / 'postgres.log'})",
            )
            eventually(
                lambda: listening(db.address, REDIS_PORT), START_TIMEOUT, f"Redis on {db.address}"
            )
            yield conninfo
        finally:
            stop_process(redis, signal.SIGTERM)
            stop_process(postgres, signal.SIGINT)  # a fast shutdown


def start_postgres(net: Network, db: Host, pgdata: Path, log: Path) -> subprocess.Popen[bytes]:
    """A new cluster in pgdata (owned by the unprivileged user), its postmaster run as that
    user in the database host's namespace."""
    from prefork.db.embedded import _import_pgserver

    commands = _import_pgserver()._commands
    owner = pgdata.stat()
    as_owner = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": [], "cwd": pgdata}
    commands.initdb(
        ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=pgdata, timeout=60, **as_owner
    )
    with open(pgdata / "pg_hba.conf", "a") as hba:
        hba.write(f"host all all {net.subnet} trust\n")
    settings = {
        "listen_addresses": db.address,
        "max_connections": "100",
        "unix_socket_directories": "",
        "fsync": "off",
    }
    options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
    return net.popen(
        db,
        [
            "setpriv",
            f"--reuid={owner.st_uid}",
            f"--regid={owner.st_gid}",
            "--clear-groups",
            "--",
            str(commands.POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(pgdata),
            *options,
        ],
        log,
    )


def accepts(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo).close()
        return True
    except psycopg.OperationalError:
        return False


def stop_process(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def balancer(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """nginx on the lb host with the site `prefork nginx` writes, both hosts upstream."""
    a, b, lb = (host(network, name) for name in ("a", "b", "lb"))
    site = generate(
        "--server-name",
        "cluster.test",
        "--listen",
        str(LB_PORT),
        "--proxy-mode",
        "--workers",
        "2",
        "-p",
        str(HTTP_PORT),
        "--gevent-port",
        str(REALTIME_PORT),
        "--upstream",
        a.address,
        "--upstream",
        b.address,
    )
    assert site.returncode == 0, site.stderr
    directory = tmp_path_factory.mktemp("nginx")
    conf = nginx_conf(directory, site.stdout)
    checked = nginx_test(directory, conf)
    assert checked.returncode == 0, checked.stderr
    proc = network.popen(
        lb, [str(NGINX), "-c", str(conf), "-p", str(directory)], directory / "nginx.out"
    )
    nginx = Server(proc, directory / "error.log")
    nginx.host, nginx.port = lb.address, LB_PORT
    try:
        eventually(lambda: listening(lb.address, LB_PORT), START_TIMEOUT, "nginx listening")
        yield nginx
    finally:
        stop_process(proc, signal.SIGTERM)


# -- the prefork hosts: started by each test, on a database of its own --------------------


class Cluster:
    def __init__(
        self, network: Network, database: str, admin: str, nginx: Server, tmp_path: Path
    ) -> None:
        self.network = network
        self.database = database
        self.conninfo = admin.replace("dbname=postgres", f"dbname={database}")
        self.nginx = nginx
        self.tmp_path = tmp_path
        self.servers: dict[str, Server] = {}

    def start(self, **extra: tuple[str, ...]) -> dict[str, Server]:
        """Start the hosts named (a=(), b=("--flag", "value")) together; wait for each."""
        for name, args in extra.items():
            self.servers[name] = self._spawn(host(self.network, name), args)
        for name in extra:
            server = self.servers[name]
            server.wait_log(READY_RE.pattern, START_TIMEOUT)
            server.wait_log(r"realtime service \(websocket, long-polling\) on", START_TIMEOUT)
        return {name: self.servers[name] for name in extra}

    def _spawn(self, where: Host, args: tuple[str, ...]) -> Server:
        db = host(self.network, "db").address
        command = [
            PREFORK,
            "run",
            "--app",
            "tests.apps.clusterapp:app",
            "--http-interface",
            where.address,
            "-p",
            str(HTTP_PORT),
            "--gevent-port",
            str(REALTIME_PORT),
            "--workers",
            "2",
            "--max-cron-threads",
            "1",
            "--data-dir",
            str(self.tmp_path / where.name),
            "--db_host",
            db,
            "--db_user",
            "postgres",
            "--database",
            self.database,
            "--db_sslmode",
            "disable",
            "--db_maxconn",
            "8",
            "--proxy-mode",
            "--session-store",
            f"redis://{db}:{REDIS_PORT}/0",
            *args,
        ]
        # Only its command line configures a host: none of the test's PREFORK_* variables.
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PREFORK_") and key != "PYTHONPATH"
        }
        env.update(
            PREFORK_SESSION_SECRET=SECRET, CLUSTER_HOST=where.name, SLOTJOBS_DIR=str(self.tmp_path)
        )
        log_path = self.tmp_path / f"host-{where.name}-{time.monotonic_ns()}.log"
        server = Server(self.network.popen(where, command, log_path, env=env, cwd=ROOT), log_path)
        server.host, server.port = where.address, HTTP_PORT
        return server

    def signal(self, name: str, signum: int) -> None:
        """To the host's whole process group: its master, workers and realtime process."""
        os.killpg(self.servers[name].proc.pid, signum)

    def processes(self, name: str) -> set[int]:
        try:
            master = psutil.Process(self.servers[name].proc.pid)
            return {master.pid, *(child.pid for child in master.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def host_of(self, pid: int) -> str:
        return next((name for name in self.servers if pid in self.processes(name)), "?")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def stop(self) -> None:
        for name, server in self.servers.items():
            if server.proc.poll() is None:
                self.signal(name, signal.SIGCONT)  # a frozen host stops only once resumed
                server.proc.send_signal(signal.SIGTERM)
        for name, server in self.servers.items():
            try:
                server.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.signal(name, signal.SIGKILL)
                server.proc.wait()


@pytest.fixture
def cluster(
    network: Network, database_host: str, balancer: Server, tmp_path: Path
) -> Iterator[Cluster]:
    database = f"multihost_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_host, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    cluster = Cluster(network, database, database_host, balancer, tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()
        with psycopg.connect(database_host, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
        for name, server in cluster.servers.items():  # shown by pytest when the test failed
            print(f"---- host {name}: {server.log_path}\n{server.log()[-6000:]}")
    for server in cluster.servers.values():  # a bug in prefork itself fails the test
        for marker in SERVER_BUGS:
            assert marker not in server.log(), f"{marker!r} in the host's log:\n{server.log()}"


# -- the tests ----------------------------------------------------------------------------

READS = 40


def test_a_session_set_on_one_host_is_read_on_the_other_and_through_nginx(cluster: Cluster) -> None:
    a, b = cluster.start(a=(), b=()).values()
    status, body, set_cookie = request(a, "/login?user=ada")
    assert status == 200 and body["session"] == {"user": "ada"}
    cookie = cookie_of(set_cookie)
    on_b = [request(b, "/", cookie) for _ in range(READS)]
    assert [(status, body["session"], again) for status, body, again in on_b] == [
        (200, {"user": "ada"}, "")
    ] * READS  # read as it is: no write, no new cookie
    through_nginx = [request(cluster.nginx, "/", cookie) for _ in range(READS)]
    assert [(status, body["session"]) for status, body, _ in through_nginx] == [
        (200, {"user": "ada"})
    ] * READS
    served = {cluster.host_of(body["pid"]) for _, body, _ in through_nginx}
    assert served == {"a", "b"}, "nginx sent every request to one host"
    request(b, "/set?key=theme&value=dark", cookie)  # and written on B, read on A
    assert request(a, "/", cookie)[1]["session"] == {"user": "ada", "theme": "dark"}


MESSAGES = 60  # half through A, then A is killed, half through B
CLIENTS = 3


def publish(server: Server, number: int) -> None:
    conn = server.http(timeout=15)
    try:
        conn.request(
            "POST",
            "/publish?channel=multihost",
            json.dumps({"n": number}),
            {"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        conn.close()


def test_bus_messages_through_one_host_reach_the_other_while_it_is_killed(cluster: Cluster) -> None:
    a, b = cluster.start(a=(), b=()).values()
    url = f"ws://{b.host}:{b.realtime_port}/websocket"
    with ExitStack() as stack:
        clients = [stack.enter_context(OdooLikeWorker(url, ["multihost"])) for _ in range(CLIENTS)]
        for client in clients:
            client.wait_for(lambda c=client: c.opened, START_TIMEOUT)
        for number in range(MESSAGES // 2):
            publish(a, number)
        cluster.signal("a", signal.SIGKILL)
        a.proc.wait(STOP_TIMEOUT)
        eventually(
            lambda: not cluster.network.pids(host(cluster.network, "a").namespace),
            STOP_TIMEOUT,
            "every process of host A gone",
        )
        for number in range(MESSAGES // 2, MESSAGES):
            publish(b, number)
        for client in clients:
            client.wait_for(lambda c=client: len(c.received) >= MESSAGES, 30)
        time.sleep(0.5)  # a message sent twice would have arrived by now
    for client in clients:
        assert [item["message"]["n"] for item in client.received] == list(range(MESSAGES))
        ids = [item["id"] for item in client.received]
        assert ids == sorted(set(ids))  # in order, none twice
        assert client.opened == 1  # B's clients never saw A go


SLOT_JOBS = ("--cron-jobs", "tests.apps.slotjobs", "--limit-time-real-cron", "3")
LEASE_TIMEOUT = 30.0  # seconds the lease may take to pass to the other host: 3 s + a grace


def running(tmp_path: Path) -> tuple[str, datetime, int] | None:
    """(host, slot, worker pid) of a run of the slot job, from its marker."""
    for marker in tmp_path.glob("running-*"):
        try:
            state = json.loads(marker.read_text())
        except (OSError, ValueError):  # gone, or being written
            continue
        return (
            marker.name.removeprefix("running-"),
            datetime.fromisoformat(state["slot"]),
            state["pid"],
        )
    return None


def ended(marker: Path, pid: int) -> bool:
    """The job returned (its marker removed), or its worker is gone: no late commit."""
    return not marker.exists() or not psutil.pid_exists(pid)


def test_a_frozen_host_loses_its_cron_job_to_the_other_and_no_slot_runs_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Needs cron leases (prefork/cron/lease.py): the frozen host's lock is freed by PostgreSQL
    after limit_time_real_cron + a grace."""
    cluster.query(
        "CREATE TABLE slots (slot timestamptz NOT NULL, host text NOT NULL, "
        "pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    cluster.start(a=SLOT_JOBS, b=SLOT_JOBS)
    frozen, slot, worker = eventually(
        lambda: running(tmp_path), START_TIMEOUT, "a host runs the job"
    )
    other = "b" if frozen == "a" else "a"
    marker = tmp_path / f"running-{frozen}"
    cluster.signal(frozen, signal.SIGSTOP)
    try:
        assert marker.exists(), "frozen after the job, not in it"
        eventually(
            lambda: cluster.query(
                "SELECT count(*) >= 2 FROM slots WHERE host = %s AND slot > %s", other, slot
            )[0][0],
            LEASE_TIMEOUT,
            f"host {other} runs the slots after {slot} while {frozen} is frozen in one",
        )
    finally:
        cluster.signal(frozen, signal.SIGCONT)
    eventually(
        lambda: ended(marker, worker), START_TIMEOUT, f"the job the frozen host {frozen} ran ends"
    )
    recorded = cluster.query("SELECT count(*) FROM slots")[0][0]
    eventually(
        lambda: cluster.query("SELECT count(*) FROM slots")[0][0] > recorded,
        START_TIMEOUT,
        "a slot is run after the frozen host is back",
    )
    twice = cluster.query(
        "SELECT slot, array_agg(host ORDER BY at) FROM slots GROUP BY slot HAVING count(*) > 1"
    )
    assert twice == [], "slots recorded more than once"


DRAIN_DELAY = 5  # seconds: room to see host A answer while it drains


def test_a_host_drained_behind_nginx_fails_no_request(cluster: Cluster) -> None:
    """Needs drain_delay (docs/deployment.md, "Draining before a stop")."""
    a, _ = cluster.start(a=("--drain-delay", str(DRAIN_DELAY)), b=()).values()
    nginx = cluster.nginx
    with Load(nginx.port, clients=4, path="/", host=nginx.host) as load:
        eventually(
            lambda: {cluster.host_of(p) for p in set(load.result.pids)} >= {"a", "b"},
            START_TIMEOUT,
            "nginx sends requests to both hosts",
        )
        a_workers = cluster.processes("a")
        # To the master only, as systemd's KillMode=mixed (prefork systemd's unit) sends
        # it: workers that got TERM themselves would stop at once instead of draining.
        a.proc.send_signal(signal.SIGTERM)
        with Load(nginx.port, clients=2, path="/", host=nginx.host) as draining:
            eventually(
                lambda: health(a) == (503, {"status": "draining"}),
                DRAIN_DELAY,
                "host A answers /web/health with 503 draining",
            )
            eventually(
                lambda: draining.result.pids & a_workers,
                DRAIN_DELAY,
                "host A serves requests while it drains",
            )
        assert a.proc.wait(START_TIMEOUT) == 0
        served = load.result.ok
        eventually(lambda: load.result.ok > served + 20, START_TIMEOUT, "B serves on")
    assert (load.result.failed, dict(load.result.errors)) == (0, {})


def health(server: Server) -> tuple[int, Any]:
    try:
        status, _, body = server.get("/web/health")
        return status, json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
