"""The hosts `prefork nginx --upstream HOST[:PORT[:REALTIME_PORT]]` balances over, and how
nginx fails over between them. Without REALTIME_PORT a host's realtime port is the
configuration's (gevent_port); two hosts on one address need theirs given.

nginx (1.9.13 and later) passes a request to the next host on `error`, `timeout` and the
listed `http_5xx` answers, except a non-idempotent one (POST, LOCK, PATCH) once it was sent
to a host: a POST is retried only when the connection could not be made. `non_idempotent`
would retry it after it may have run: never given here.

A host whose processes are frozen still completes TCP handshakes (its kernel answers), so
only the read timeout tells it from a slow request. Reads (GET, HEAD) get a short one
(--failover-timeout) and are retried on the next host; the other methods wait
limit_time_real + 10 s, the longest a request runs before prefork itself stops it: a POST
cut earlier could not be retried, and would still run on the host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

CONNECT_TIMEOUT = 3  # seconds: a host that does not answer a SYN is down, or unreachable
MAX_FAILS = 3  # failed attempts within FAIL_TIMEOUT that take a host out for FAIL_TIMEOUT
FAIL_TIMEOUT = 10
TRIES = 2  # hosts one request may be sent to
READS_LOCATION = "@prefork_reads"
# Requests that get the short read timeout: reads, which nginx retries on the next host.
READ_METHODS = "GET|HEAD"
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?\Z")
_EXPECTED = (
    "expected HOST[:PORT[:REALTIME_PORT]], an IPv6 address in brackets "
    "([::1]:8069:8072), ports 1-65535"
)


class UpstreamError(ValueError):
    """An --upstream value nginx could not use."""


@dataclass(frozen=True)
class Upstream:
    host: str  # as nginx writes it: a name, an IPv4 address or an [IPv6] address
    port: int  # its HTTP port
    realtime: int = 0  # its realtime port; 0: the configuration's

    def address(self, port: int) -> str:
        return f"{self.host}:{port}"


def parse_upstream(text: str, http_port: int) -> Upstream:
    """HOST, HOST:PORT, HOST:PORT:REALTIME_PORT, and the same with an [IPv6] address (a
    bare IPv6 address has no port); without a port, `http_port`."""
    host, ports = _split(text.strip())
    if host.startswith("["):
        _check_ipv6(text, host[1:-1])
    elif not _NAME.match(host):
        raise UpstreamError(f"--upstream {text!r}: {_EXPECTED}")
    port, _, realtime = ports.partition(":")
    if _ and not realtime:
        raise UpstreamError(f"--upstream {text!r}: {_EXPECTED}")
    return Upstream(host, _port(text, port) or http_port, _port(text, realtime))


def parse_upstreams(texts: list[str], http_port: int, gevent_port: int) -> tuple[Upstream, ...]:
    """The hosts, each once, and no two listening on one address and port; `gevent_port`:
    the default realtime port (0: each host's HTTP port, threaded mode)."""
    hosts = [parse_upstream(text, http_port) for text in texts]
    taken: dict[str, str] = {}
    for text, upstream in zip(texts, hosts, strict=True):
        for address in {
            upstream.address(upstream.port),
            upstream.address(upstream.realtime or gevent_port or upstream.port),
        }:
            if address in taken:
                raise UpstreamError(
                    f"--upstream {text!r}: {address} is already --upstream "
                    f"{taken[address]!r}'s port; hosts on one address need ports of their "
                    "own: HOST:PORT:REALTIME_PORT"
                )
            taken[address] = text
    return tuple(hosts)


def _split(text: str) -> tuple[str, str]:
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "?"
        if rest and not rest.startswith(":"):
            raise UpstreamError(f"--upstream {text!r}: {_EXPECTED}")
        return text[: end + 1], rest[1:] if rest else ""
    if _is_ipv6(text):  # a bare IPv6 address: no port
        return f"[{text}]", ""
    host, _, ports = text.partition(":")
    if _ and not ports:
        raise UpstreamError(f"--upstream {text!r}: {_EXPECTED}")
    return host, ports


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_ipv6(text: str, address: str) -> None:
    if not _is_ipv6(address):
        raise UpstreamError(f"--upstream {text!r}: {address!r} is not an IPv6 address; {_EXPECTED}")


def _port(text: str, port: str) -> int:
    if not port:
        return 0
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UpstreamError(f"--upstream {text!r}: {_EXPECTED}")
    return int(port)


def upstream_block(name: str, servers: list[str], method: str = "", keepalive: int = 0) -> str:
    """An upstream of several hosts: each rests FAIL_TIMEOUT after MAX_FAILS failures.
    A balancing method must come before `keepalive`."""
    lines = [
        *([f"{method};"] if method else []),
        *(
            f"server {server} max_fails={MAX_FAILS} fail_timeout={FAIL_TIMEOUT}s;"
            for server in servers
        ),
        *([f"keepalive {keepalive};"] if keepalive else []),
    ]
    return f"upstream {name} {{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


def failover(read_timeout: int, failover_timeout: int) -> list[str]:
    """The directives of a location that may pass a request to the next host: a retry
    only within the time one read and two connections take, so a request that waited a
    long read timeout is not sent again."""
    return [
        f"proxy_connect_timeout {CONNECT_TIMEOUT}s;",
        "proxy_next_upstream error timeout http_502 http_503 http_504;",
        f"proxy_next_upstream_tries {TRIES};",
        f"proxy_next_upstream_timeout {failover_timeout + 2 * CONNECT_TIMEOUT}s;",
        f"proxy_read_timeout {read_timeout}s;",
    ]
