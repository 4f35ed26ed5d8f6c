"""`prefork status`: the processes of a running master, from its state file."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from prefork.config.loader import Loaded
from prefork.ops.cluster_view import read_cluster
from prefork.ops.state import MasterState, ProcessRow, read_state, state_path
from prefork.servers.exits import mib

HEADER = ("ROLE", "PID", "STATE", "RSS", "CPU%", "REQUESTS", "AGE", "CURRENT REQUEST")
WIDTHS = (18, 8, 9, 11, 6, 9, 9)


def status(loaded: Loaded, as_json: bool, out: TextIO = sys.stdout) -> int:
    path = state_path(loaded.settings)
    state = read_state(path)
    if state is None:
        print(f"prefork: no running master found (state file {path})", file=sys.stderr)
        return 1
    cluster = read_cluster(loaded.settings, state["master"]["pid"])
    if as_json:
        json.dump({**state, "cluster": cluster}, out, indent=2)
        out.write("\n")
        return 0
    for line in render(state, time.time()) + cluster_lines(cluster):
        print(line, file=out)
    return 0


CLUSTER_HEADER = ("HOST", "MASTER PID", "VERSION", "MODE", "SESSIONS", "CONNECTIONS", "SEEN")
CLUSTER_WIDTHS = (24, 11, 8, 16, 28, 12)


def cluster_lines(cluster: dict[str, Any]) -> list[str]:
    """The hosts of the registry, and its warnings; nothing for a single host."""
    if "error" in cluster:
        return ["", f"cluster: database unreachable: {cluster['error']}"]
    hosts = cluster["hosts"]
    if len(hosts) < 2 and not cluster["warnings"]:
        return []
    lines = ["", "cluster:", _row(CLUSTER_HEADER, CLUSTER_WIDTHS)]
    for host in hosts:
        seen = f"{host['seen_ago']:.0f}s ago" + ("" if host["live"] else " (gone)")
        sessions = f"{host['session_store']} {host['session_location']}".strip()
        lines.append(
            _row(
                (
                    f"{host['host']}:{host['http_port']}",
                    str(host["pid"]),
                    host["version"],
                    host["mode"],
                    sessions,
                    str(host["connections"]),
                    seen,
                ),
                CLUSTER_WIDTHS,
            )
        )
    return lines + [f"WARNING cluster: {warning}" for warning in cluster["warnings"]]


def render(state: MasterState, now: float) -> list[str]:
    master = state["master"]
    lines = [
        f"prefork {state['version']}, {state['mode']} mode, master pid {master['pid']}, "
        f"up {_age(now - master['started_at'])}",
        f"configuration: {state['config'] or '(none)'}; listening on "
        f"{', '.join(state['listeners']) or '(nothing)'}; target workers "
        f"{state['target_workers']}",
        "",
        _row(HEADER),
    ]
    for process in [master, *state["processes"]]:
        lines.append(_row(_cells(process, now)))
    database = state.get("database") or {}
    if database.get("embedded"):
        pid = f" (pid {database['pid']})" if database["pid"] else ""
        lines += [
            "",
            f"embedded PostgreSQL: {database['state']}{pid}, restarted "
            f"{database['restarts']} time(s) by the master; its log: {database['log']}",
        ]
    exits = state["exits"][-10:]
    if exits:
        lines += ["", "recent exits:"]
        for record in exits:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["at"]))
            line = f"  {at}  {record['role']} (pid {record['pid']}): {record['reason']}"
            if record["detail"]:
                line += f", {record['detail']}"
            if record["request"]:
                line += f", request '{record['request']}'"
            lines.append(line)
    for alert in state.get("alerts", []):
        lines += [
            "",
            f"ALERT {alert['kind']}: {alert['count']} exits in the last "
            f"{alert['window']}s, last {alert['reason']}",
        ]
    return lines


def _cells(process: ProcessRow, now: float) -> tuple[str, ...]:
    request = process["request"]
    if request:
        request = f"{request} ({process['request_seconds']:.1f}s)"
    if process.get("sending_clients"):
        request = (f"{request}; " if request else "") + (
            f"sending {mib(process['sending_bytes'])} to "
            f"{process['sending_clients']} slow reader(s)"
        )
    return (
        process["role"],
        str(process["pid"]),
        process["state"],
        mib(process["rss"]),
        f"{process['cpu']:.1f}",
        str(process["requests"]),
        _age(now - process["started_at"]),
        request,
    )


def _row(cells: tuple[str, ...], widths: tuple[int, ...] = WIDTHS) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
    return " ".join(padded + list(cells[len(widths) :])).rstrip()


def _age(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
