"""The command line as an argument parser: every subcommand's flags, generated from the
option table, and the assignments they make, ready for the loader.

Errors in flags or files raise ConfigError: the caller prints one line and exits with 2.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from typing import Any, NoReturn

from prefork import __version__
from prefork.config.errors import ConfigError
from prefork.config.kinds import BOOLEAN
from prefork.config.loader import (
    Assignment,
    Loaded,
    load_settings,
    odoo_target,
    one_name_per_option,
)
from prefork.config.odoo_keys import NONE, ODOO, ODOO_KEYS, OPTIONAL, REPEAT, OdooFlag
from prefork.config.settings import ALIASES, SPECS, OptionSpec

COMMANDS = ("run", "check", "status", "cron", "bus", "tune", "nginx", "systemd")
ODOO_SERVER = "server"  # odoo-bin's name of its default command, pasted from Odoo's units
CLI = "command line"
FAILOVER_TIMEOUT = 15  # `prefork nginx`: default seconds an idempotent request waits


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _add_option(parser: argparse.ArgumentParser, spec: OptionSpec) -> None:
    if not spec.flags:
        return
    meta = argparse.SUPPRESS
    text = spec.help.replace("%", "%%")  # argparse formats help with %: the table's is plain
    if spec.kind is BOOLEAN:
        parser.add_argument(
            *spec.flags, dest=spec.key, action="store_const", const="True", default=meta, help=text
        )
        parser.add_argument(
            "--no-" + spec.flags[-1][2:],
            dest=spec.key,
            action="store_const",
            const="False",
            default=meta,
            help=argparse.SUPPRESS,
        )
    else:
        parser.add_argument(
            *spec.flags, dest=spec.key, default=meta, metavar=spec.key.upper(), help=text
        )
    for alias in spec.aliases:
        parser.add_argument(
            "--" + alias.replace("_", "-"),
            dest="alias:" + alias,
            default=meta,
            help=argparse.SUPPRESS,
        )


ODOO_FLAGS_HELP = (
    "odoo-bin's flags are accepted too, as Odoo spells them (-i, -u, --load, "
    "--db-filter, --xmlrpc-port, ...): those prefork has a meaning for set "
    "that option, the others are ignored with a warning; --no-http is refused "
    "(prefork always serves HTTP). docs/odoo.md in prefork's source lists "
    "them all."
)


def _add_odoo_flags(parser: argparse.ArgumentParser) -> None:
    """odoo-bin's flags that prefork does not spell the same way, hidden from --help."""
    taken = set(parser._option_string_actions)
    for entry in ODOO_KEYS:
        for flag in entry.flags:
            names = [name for name in flag.names if name not in taken]
            if not names:
                continue  # prefork's own flag: same spelling, same meaning
            dest = f"odoo:{entry.key}:{flag.names[-1]}"
            parser.add_argument(
                *names,
                dest=dest,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
                **_odoo_arity(flag),
            )


def _odoo_arity(flag: OdooFlag) -> dict[str, Any]:
    if flag.arg == NONE:
        return {"action": "store_const", "const": flag.value or "True"}
    if flag.arg == OPTIONAL:
        return {"nargs": "?", "const": "True"}
    if flag.arg == REPEAT:
        return {"action": "append"}
    return {}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file (INI, section [options]); default: $PREFORK_CONFIG",
    )
    for spec in SPECS.values():
        _add_option(parser, spec)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="prefork",
        description="Application server for WSGI apps with Odoo's multi-processing model.",
    )
    parser.add_argument("--version", action="version", version=f"prefork {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser(
        "run", help="start the server (the default command)", epilog=ODOO_FLAGS_HELP
    )
    run.add_argument(
        "app_ref",
        nargs="?",
        metavar="APP",
        help="WSGI application 'module:callable' (same as --app)",
    )
    run.add_argument(
        "--stop-after-init",
        action="store_true",
        help="initialise (database reached and migrated, application and "
        "jobs imported, log and pidfile opened), then exit: 0, or 2 and why",
    )
    _add_common(run)
    _add_odoo_flags(run)
    check = sub.add_parser(
        "check", help="validate the configuration and show what would start", epilog=ODOO_FLAGS_HELP
    )
    _add_common(check)
    _add_odoo_flags(check)
    status = sub.add_parser("status", help="show the processes of the running server")
    status.add_argument("--json", action="store_true", help="print the raw state as JSON")
    _add_common(status)
    cron = sub.add_parser("cron", help="list, trigger, enable or disable scheduled jobs")
    cron.add_argument("action", choices=("list", "run", "enable", "disable"))
    cron.add_argument("name", nargs="?", help="the job's name (run, enable, disable)")
    cron.add_argument(
        "--foreground",
        action="store_true",
        help="run: run the job here and now instead of waking a cron worker",
    )
    _add_common(cron)
    tune = sub.add_parser("tune", help="print an [options] block sized for a machine")
    tune.add_argument("--cpus", type=int, help="CPUs (default: this machine's)")
    tune.add_argument("--ram", help="memory, e.g. 8G (default: this machine's)")
    tune.add_argument("--users", type=int, default=0, help="concurrent users to serve")
    _add_common(tune)
    site = sub.add_parser("nginx", help="print an nginx site for this configuration")
    site.add_argument("--server-name", required=True, help="the site's host name(s)")
    site.add_argument("--listen", type=int, default=80, help="HTTP port nginx listens on")
    site.add_argument("--tls-cert", default="", help="certificate file: serve HTTPS")
    site.add_argument("--tls-key", default="", help="its key file")
    site.add_argument("--tls-listen", type=int, default=443, help="HTTPS port")
    site.add_argument(
        "--legacy-longpolling",
        action="store_true",
        help="deprecated, no effect: /longpolling (clients of Odoo 15 and older) is always routed",
    )
    site.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="HOST[:PORT[:REALTIME_PORT]]",
        help="a prefork host to balance over (repeat for each; PORT: "
        "http_port by default, REALTIME_PORT: gevent_port by default; "
        "IPv6 as [::1]:8069); without it, this host alone",
    )
    site.add_argument(
        "--failover-timeout",
        type=int,
        default=FAILOVER_TIMEOUT,
        metavar="SECONDS",
        help="with --upstream: seconds a GET or HEAD waits "
        "for its answer before nginx sends it to the next host (default "
        f"{FAILOVER_TIMEOUT}); other methods wait limit_time_real + 10 s",
    )
    _add_common(site)
    unit = sub.add_parser("systemd", help="print a systemd unit for this configuration")
    unit.add_argument("--user", help="the user to run as (default: the current one)")
    unit.add_argument("--group", help="its group (default: the current one)")
    _add_common(unit)
    bus = sub.add_parser("bus", help="publish a message on the realtime bus")
    bus.add_argument("action", choices=("send",))
    bus.add_argument(
        "channel",
        help="the channel to publish on: a name, or a record "
        'channel as a JSON list, e.g. \'["mydb", "res.partner", 7]\'',
    )
    bus.add_argument("message", help="the message, as JSON text")
    _add_common(bus)
    return parser


def _all_flags(parser: argparse.ArgumentParser, command: str) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [flag for action in sub.choices[command]._actions for flag in action.option_strings]


def _reject_extras(extras: list[str], parser: argparse.ArgumentParser, command: str) -> None:
    if not extras:
        return
    word = extras[0]
    if not word.startswith("-"):
        raise ConfigError(f"unexpected argument {word!r}")
    flag = word.split("=", 1)[0]
    close = difflib.get_close_matches(flag, _all_flags(parser, command), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown option {flag!r}{hint}")


def _assignments(ns: argparse.Namespace, warnings: list[str]) -> list[Assignment]:
    items = []
    for dest, raw in vars(ns).items():
        if dest.startswith("alias:"):
            alias = dest[len("alias:") :]
            flag = "--" + alias.replace("_", "-")
            target = ALIASES[alias]
            warnings.append(f"command line: {flag} is deprecated, use {SPECS[target].flags[-1]}")
            items.append(Assignment(target, raw, CLI, f"option {flag!r}", via=alias))
        elif dest in SPECS and SPECS[dest].flags:
            items.append(Assignment(dest, raw, CLI, f"option {SPECS[dest].flags[-1]!r}"))
        elif dest.startswith("odoo:"):
            items.extend(_odoo_assignment(dest, raw, warnings))
    if getattr(ns, "app_ref", None):
        items.append(Assignment("app", ns.app_ref, CLI, "argument APP"))
    return one_name_per_option(items, warnings, in_order=False)


def _odoo_assignment(dest: str, raw: Any, warnings: list[str]) -> list[Assignment]:
    """An odoo-bin flag: the prefork option it sets, or a warning."""
    _, key, flag = dest.split(":", 2)
    entry = ODOO[key]
    value = raw if isinstance(raw, str) else "True"  # repeated flags are all Odoo-only
    target = odoo_target(entry, value, CLI, warnings, flag)
    if target is None:
        return []
    return [Assignment(target, value, CLI, f"option {flag!r}", via=key)]


def parse_command_line(argv: Sequence[str]) -> tuple[argparse.Namespace, Loaded]:
    """The subcommand and its flags, and the settings they load with the files and env."""
    args = list(argv)
    if args and args[0] == ODOO_SERVER:
        args[0] = "run"
    if not args or (args[0] not in COMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "run")
    parser = build_parser()
    ns, extras = parser.parse_known_args(args)
    _reject_extras(extras, parser, ns.command)
    cli_warnings: list[str] = []
    cli = _assignments(ns, cli_warnings)
    loaded = load_settings(cli, config_path=ns.config)
    loaded.warnings.extend(cli_warnings)
    return ns, loaded
