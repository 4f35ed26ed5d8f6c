"""Network namespaces for tests that need several hosts: one namespace per host, all on a
bridge that lives in a namespace of its own, and the test's namespace on that bridge through
one veth, so the test talks to every host by its address.

    with Network(f"pf{os.getpid()}") as net:
        db = net.add_host("db")              # 10.231.X.2, in namespace pf<pid>db
        proc = net.popen(db, ["redis-server", "--bind", db.address], log_path)

Every process a test starts in a host runs through `ip netns exec` (which execs it, so the
Popen's pid is the process itself) in a session of its own: its pid is its process group.
Closing the network ends what is left in its namespaces by pid (only the test puts processes
there), then deletes them: the veths and the bridge go with them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

IP = shutil.which("ip")
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")  # one /24 of it per network
TEST_HOST = 254  # the test's own address on the bridge: .254
EXIT_WAIT = 10.0  # seconds a killed process may take to go


class NetnsUnavailable(Exception):
    """Namespaces cannot be made here (not root, no `ip`, or not permitted)."""


@dataclass(frozen=True)
class Host:
    name: str  # short: "a", "db"
    namespace: str  # pf<pid><name>
    address: str


def _ip(*args: str) -> None:
    assert IP is not None
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def used_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations routed in the test's namespace (all tables), but the default."""
    assert IP is not None
    out = subprocess.run(
        [IP, "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [
        ipaddress.IPv4Network(route["dst"], strict=False)
        for route in json.loads(out or "[]")
        if route.get("dst") not in (None, "default")
    ]


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of SUBNETS that nothing here routes (another network of a running test does)."""
    used = used_networks()
    for subnet in SUBNETS.subnets(new_prefix=24):
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise NetnsUnavailable(f"every /24 of {SUBNETS} is routed on this host")


class Network:
    def __init__(self, prefix: str) -> None:
        if IP is None:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
        if os.geteuid() != 0:
            raise NetnsUnavailable("network namespaces need root")
        self.prefix = prefix  # interface names take 15 characters: keep it short
        self.switch = f"{prefix}sw"
        self.uplink = f"{prefix}t"  # the test's end of its veth, in the test's namespace
        self.subnet = free_subnet()
        self.hosts: list[Host] = []
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Network:
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "name", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "dev", "br0", "up")
            _ip(
                "link",
                "add",
                "name",
                self.uplink,
                "type",
                "veth",
                "peer",
                "name",
                "test",
                "netns",
                self.switch,
            )
            self._plug("test")
            _ip("addr", "add", f"{self._address(TEST_HOST)}/24", "dev", self.uplink)
            _ip("link", "set", "dev", self.uplink, "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _address(self, number: int) -> str:
        return str(self.subnet.network_address + number)

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("-n", name, "link", "set", "dev", "lo", "up")

    def _plug(self, port: str) -> None:
        _ip("-n", self.switch, "link", "set", "dev", port, "master", "br0", "up")

    def add_host(self, name: str) -> Host:
        """A namespace with one interface, eth0, on the bridge; addresses from .2 on."""
        host = Host(name, f"{self.prefix}{name}", self._address(len(self.hosts) + 2))
        self._add_namespace(host.namespace)
        _ip(
            "-n",
            self.switch,
            "link",
            "add",
            "name",
            f"to-{name}",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            host.namespace,
        )
        self._plug(f"to-{name}")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "dev", "eth0", "up")
        self.hosts.append(host)
        return host

    def popen(
        self,
        host: Host,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` in the host's namespace, in a new session (its own process group),
        its output in log_path."""
        assert IP is not None
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [IP, "netns", "exec", host.namespace, *argv],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self._procs.append(proc)
        return proc

    def pids(self, namespace: str) -> list[int]:
        assert IP is not None
        out = subprocess.run(
            [IP, "netns", "pids", namespace], capture_output=True, text=True, timeout=30
        ).stdout
        return [int(word) for word in out.split()]

    def close(self) -> None:
        """End every process left in the namespaces (each started by this test), delete
        the namespaces (their interfaces go with them) and the test's veth."""
        for namespace in reversed(self._namespaces):
            self._empty(namespace)
        for proc in self._procs:  # reap them
            try:
                proc.wait(EXIT_WAIT)
            except subprocess.TimeoutExpired:
                pass
        subprocess.run(
            [IP or "ip", "link", "del", "dev", self.uplink],
            capture_output=True,
            timeout=30,
            check=False,
        )
        for namespace in reversed(self._namespaces):
            subprocess.run(
                [IP or "ip", "netns", "del", namespace],
                capture_output=True,
                timeout=30,
                check=False,
            )
        self._namespaces = []

    def _empty(self, namespace: str) -> None:
        deadline = time.monotonic() + EXIT_WAIT
        while (pids := self.pids(namespace)) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)  # stopped ones too
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
