"""The systemd unit `prefork systemd` prints."""

from __future__ import annotations

import math
import os
import shlex
import sys

from prefork.addresses import http_address, realtime_address
from prefork.config import Settings

RUN = "/run"
STOP_MARGIN = 30  # seconds beyond drain_delay + limit_time_real before systemd kills the rest


def render(settings: Settings, config_path: str | None, user: str, group: str) -> str:
    command = [sys.executable, "-m", "prefork", "run"]
    if config_path:
        command += ["-c", os.path.abspath(config_path)]
    stop = stop_timeout(settings)
    lines = [
        "[Unit]",
        "Description=prefork application server",
        "Documentation=file://"
        + os.path.abspath(
            os.path.join(os.path.dirname(__file__), "..", "..", "docs", "deployment.md")
        ),
        "After=network-online.target postgresql.service redis-server.service",
        "Wants=network-online.target",
        "",
        "[Service]",
        "# The master says READY=1 once its HTTP workers serve, RELOADING=1 on HUP,",
        "# STOPPING=1 on TERM; after an upgrade (USR2) the new master sends MAINPID=.",
        "Type=notify",
        "NotifyAccess=all",
        f"User={user}",
        f"Group={group}",
        f"WorkingDirectory={os.getcwd()}",
        "ExecStart=" + shlex.join(command),
        "ExecReload=/bin/kill -HUP $MAINPID",
        *_runtime_directories(settings),
        "# TERM to the master alone: it drains (drain_delay), then stops its workers",
        "# gracefully; what is left after TimeoutStopSec (drain_delay + limit_time_real",
        "# + 30 s) is killed.",
        "KillMode=mixed",
        f"TimeoutStopSec={stop}",
        "Restart=on-failure",
        "RestartSec=5",
        "# Exit status 2 is a configuration error, 3 a crash loop at boot: restarting would",
        "# not help.",
        "RestartPreventExitStatus=2 3",
        "LimitNOFILE=65536",
        "LimitCORE=0",
        "NoNewPrivileges=true",
        *_private_tmp(settings),
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def _socket_paths(settings: Settings) -> list[str]:
    wanted = [http_address(settings)]
    if settings.multiprocessing:
        wanted.append(realtime_address(settings))
    return [address.path for address in wanted if address.unix]


def _private_tmp(settings: Settings) -> list[str]:
    """PrivateTmp, unless a Unix socket is in /tmp or /var/tmp: the service would make it
    in a /tmp of its own, where nginx cannot reach it."""
    shared = [path for path in _socket_paths(settings) if path.startswith(("/tmp/", "/var/tmp/"))]
    if not shared:
        return ["PrivateTmp=true"]
    return [
        f"# No PrivateTmp: the socket {shared[0]} must be where nginx can reach it "
        "(better: /run/prefork/, see RuntimeDirectory)."
    ]


def _runtime_directories(settings: Settings) -> list[str]:
    """A Unix socket in a directory of /run (/run/prefork/http.sock): systemd creates that
    directory for the service's user at each start (/run itself is root's)."""
    names = sorted(
        {
            os.path.basename(os.path.dirname(path))
            for path in _socket_paths(settings)
            if os.path.dirname(os.path.dirname(path)) == RUN
        }
    )
    if not names:
        return []
    return [
        "# The Unix sockets' directory: systemd makes it for User= at each start and",
        "# removes it at the stop (an upgrade, USR2, keeps it).",
        "RuntimeDirectory=" + " ".join(names),
        "RuntimeDirectoryMode=0755",
    ]


def stop_timeout(settings: Settings) -> int:
    """Seconds systemd waits for a stop: the drain, then the graceful stop, which
    limit_time_real bounds (the master's own grace is 120 s without it)."""
    return math.ceil(settings.drain_delay) + (settings.limit_time_real or 120) + STOP_MARGIN
