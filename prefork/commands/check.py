"""`prefork check` (and `run --stop-after-init`): validate, show what would start, exit 0 or 2."""

from __future__ import annotations

import os
import sys
from typing import TextIO

from prefork import __version__
from prefork.addresses import http_address, realtime_address
from prefork.commands.preflight import import_problems
from prefork.config import Settings
from prefork.config.loader import Loaded, in_mib
from prefork.config.secrets import shown
from prefork.config.settings import SPECS
from prefork.datadir import loose_modes
from prefork.db.report import database_report
from prefork.dev.reload import dev_warning, inert_note
from prefork.ops.adminpass import dashboard_password
from prefork.ops.forwarded import seen
from prefork.sockets import ListenError, listen_http, listen_realtime
from prefork.unix_socket import SocketFiles


def check(loaded: Loaded, out: TextIO = sys.stdout) -> int:
    settings = loaded.settings
    problems = [*_environment_problems(settings), *import_problems(settings)]
    report = database_report(settings)
    problems += report.problems
    print(f"prefork {__version__}: configuration check", file=out)
    print(f"configuration file: {loaded.config_path or '(none)'}", file=out)
    warnings = [*loaded.warnings, *report.warnings, *loose_modes(settings.data_dir)]
    forwarded = seen(loaded.settings.data_dir) if not loaded.settings.proxy_mode else ""
    if forwarded:
        warnings.append(
            f"proxy_mode is off but requests arrived with X-Forwarded-For "
            f"({forwarded}): behind a reverse proxy set proxy_mode = True"
        )
    if settings.dev_reload:
        warnings.append(dev_warning(settings))
    for warning in warnings:
        print(f"warning: {warning}", file=out)
    for note in [*loaded.notes, *inert_note(settings)]:
        print(f"note: {note}", file=out)
    print("", file=out)
    for line in [
        *describe_processes(settings),
        describe_memory(settings),
        *describe_stop(settings),
        _dashboard_line(settings),
        *report.lines,
    ]:
        print(line, file=out)
    print("\neffective settings:", file=out)
    for key in SPECS:
        value = shown(key, getattr(settings, key))
        print(f"  {key:<26} = {value:<24} # {loaded.sources.get(key, 'default')}", file=out)
    for problem in problems:
        print(f"error: {problem}", file=out)
    print("\nresult: " + ("FAILED" if problems else "OK"), file=out)
    return 2 if problems else 0


def describe_processes(settings: Settings) -> list[str]:
    http = http_address(settings).display()
    realtime = realtime_address(settings).display()
    if not settings.multiprocessing:
        return [
            "mode: threaded (workers = 0), one process",
            f"  HTTP service on {http} with {settings.http_threads} threads",
            f"  {settings.max_cron_threads} cron thread(s) (max_cron_threads)",
            f"  realtime (websocket/long-polling) on {http} (a thread; PostgreSQL only)",
        ]
    workers = str(settings.workers)  # `auto` was resolved when the settings were loaded
    return [
        f"mode: multi-processing (workers = {workers})",
        "  1 master process",
        f"  {workers} HTTP worker process(es) on {http}",
        f"  {settings.max_cron_threads} cron worker process(es) (max_cron_threads)",
        f"  1 realtime process (websocket/long-polling) on {realtime}",
    ]


def _dashboard_line(settings: Settings) -> str:
    if not dashboard_password(settings):
        return "dashboard at /prefork/: off (no dashboard_password, no usable admin_passwd)"
    source = "dashboard_password" if settings.dashboard_password else "admin_passwd"
    return f"dashboard at /prefork/: on (password: {source})"


def describe_memory(settings: Settings) -> str:
    """Odoo 15-18 compare virtual size (memory_info().vms in odoo/service/server.py) and set
    RLIMIT_AS to limit_memory_hard; prefork compares resident memory, which is smaller."""
    soft, hard = (_limit(settings.limit_memory_soft), _limit(settings.limit_memory_hard))
    return (
        f"memory limits (resident memory, RSS): a worker above {soft} "
        f"(limit_memory_soft) is recycled after its request, one above {hard} "
        "(limit_memory_hard) has its request stopped; Odoo 15-18 compare virtual memory "
        "(VMS) instead, which is larger: the same numbers let a worker grow more here"
    )


def describe_stop(settings: Settings) -> list[str]:
    """What a TERM does, when it is more than the graceful stop."""
    if not settings.drain_delay:
        return []
    return [
        f"stop: draining for {settings.drain_delay:g} s (drain_delay): /web/health "
        f"answers 503 'draining' while requests are still served, then a graceful stop "
        f"(up to {settings.limit_time_real or 120} s, limit_time_real)"
    ]


def _limit(size: int) -> str:
    return in_mib(size) if size else "no limit"


def _environment_problems(settings: Settings) -> list[str]:
    problems = []
    opens = [listen_http]
    if settings.multiprocessing:  # threaded mode serves the realtime endpoints on http_port
        opens.append(listen_realtime)
    files = SocketFiles()  # a Unix socket's file is removed again
    for open_socket in opens:
        try:
            sock = open_socket(settings)
        except ListenError as exc:
            problems.append(str(exc))
        else:
            files.claim(sock)
            sock.close()
    files.remove()
    if not _writable_dir(settings.data_dir):
        problems.append(f"data_dir {settings.data_dir!r} is not writable")
    for option, creates_dir in (("logfile", True), ("pidfile", False)):
        path = getattr(settings, option)
        reason = _unwritable(path, creates_dir=creates_dir) if path else ""
        if reason:
            problems.append(f"{option} {path!r} cannot be written: {reason}")
    return problems


def _unwritable(path: str, *, creates_dir: bool) -> str:
    """Why `path` cannot be opened for writing ("" when it can); `creates_dir`: the server
    creates a missing directory (as Odoo does for its log file)."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return "it is a directory"
    if os.path.exists(path):
        return "" if os.access(path, os.W_OK) else "permission denied"
    if not os.path.isdir(directory):
        if creates_dir:
            return "" if _writable_dir(directory) else f"cannot create {directory}"
        return f"no directory {directory}"
    return "" if os.access(directory, os.W_OK | os.X_OK) else f"{directory} is not writable"


def _writable_dir(path: str) -> bool:
    """True when `path` is, or could be created as, a writable directory."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)
