"""What is wrong with a cluster, judged from the host registry (hosts.py): sessions that
cannot follow a user from one host to another, and more connections than the database
accepts. Pure functions: the start, the realtime process, `prefork check` and the dashboard
ask the same questions of the same rows."""

from __future__ import annotations

from prefork.db.hosts import UNSHARED, HostInfo

SHARED_STORE_ADVICE = "use one Redis session_store for every host"
SECRET_ADVICE = "set the same session_secret on every host"


def session_warnings(me: HostInfo, others: list[HostInfo]) -> list[str]:
    """Why a session opened on one host of the cluster would be unknown on another."""
    if not others:
        return []
    names = ", ".join(h.name for h in others)
    prefix = f"{len(others)} other host(s) share this database ({names}) but "
    if me.session_store in UNSHARED:
        return [
            prefix + f"session_store = {me.session_store} keeps this host's sessions "
            f"to itself: users sent to another host are logged out; {SHARED_STORE_ADVICE}"
        ]
    warnings = []
    apart = [
        h
        for h in others
        if h.session_store in UNSHARED or h.session_location != me.session_location
    ]
    if apart:
        where = ", ".join(f"{h.name} ({_place(h)})" for h in apart)
        warnings.append(
            prefix + f"sessions here are in {_place(me)} and not on {where}: "
            f"users moving between them are logged out; {SHARED_STORE_ADVICE}"
        )
    if not me.session_key:
        warnings.append(
            prefix + "session_secret is not set here: this host signs session "
            "cookies with a random key of its own, which the others refuse; " + SECRET_ADVICE
        )
        return warnings
    differing = [h.name for h in others if h.session_key != me.session_key and h not in apart]
    if differing:
        warnings.append(
            prefix + f"{', '.join(differing)} sign(s) session cookies with a "
            "different or no session_secret (the fingerprints differ), so a "
            f"cookie from one is refused by the other; {SECRET_ADVICE}"
        )
    return warnings


def budget_warning(
    me: HostInfo, others: list[HostInfo], max_connections: int, reserved: int
) -> str | None:
    """The cluster's connection budget against the server's; None when it fits (a host
    that alone exceeds it is also told so by capacity.capacity_warning, at its start)."""
    hosts = [me, *others]
    total = sum(h.connections for h in hosts)
    available = max_connections - reserved
    if not others or total <= available:
        return None
    parts = " + ".join(f"{h.connections} ({h.name})" for h in hosts)
    return (
        f"the {len(hosts)} hosts on this database can open {total} connections together "
        f"({parts}) but the server accepts {available} (max_connections "
        f"{max_connections} - {reserved} reserved): lower db_maxconn or workers on the "
        "hosts, or raise max_connections"
    )


def cluster_warnings(
    me: HostInfo, others: list[HostInfo], max_connections: int, reserved: int
) -> list[str]:
    warning = budget_warning(me, others, max_connections, reserved)
    return session_warnings(me, others) + ([warning] if warning else [])


def _place(host: HostInfo) -> str:
    if host.session_store == "redis":
        return f"Redis {host.session_location}"
    if host.session_store == "file":
        return f"files on {host.host}"
    return f"the memory of {host.host}"
