"""Command line: `prefork [run] ...`, `prefork check ...`.

Every subcommand takes `-c FILE` and every option flag, all generated from the option table
(prefork.config.command_line). Errors in flags or files exit with status 2 and one clear
line, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from prefork.commands.load import parse
from prefork.config import ConfigError
from prefork.usercode import use_working_directory

EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    use_working_directory()  # before anything imports the user's code, in any process
    try:
        ns, loaded = parse(argv)
    except ConfigError as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if ns.command == "status":
        from prefork.commands.status import status

        return status(loaded, ns.json)
    if ns.command == "cron":
        from prefork.commands.cron import cron

        return cron(loaded, ns.action, ns.name, ns.foreground)
    if ns.command == "tune":
        from prefork.commands.tune import tune

        return tune(ns.cpus, ns.ram, ns.users)
    if ns.command == "nginx":
        from prefork.commands.nginx import nginx
        from prefork.ops.nginx import Site

        return nginx(
            loaded,
            Site(
                ns.server_name,
                ns.listen,
                ns.tls_cert,
                ns.tls_key,
                ns.tls_listen,
                failover_timeout=ns.failover_timeout,
            ),
            ns.upstream,
        )
    if ns.command == "systemd":
        from prefork.commands.systemd import systemd

        return systemd(loaded, ns.user, ns.group)
    if ns.command == "bus":
        from prefork.commands.bus import bus_send

        return bus_send(loaded, ns.channel, ns.message)
    if ns.command == "check":
        from prefork.commands.check import check

        return check(loaded)
    from prefork.commands.run import run

    return run(loaded, argv, stop_after_init=ns.stop_after_init)
