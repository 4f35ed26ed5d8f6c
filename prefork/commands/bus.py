"""`prefork bus send CHANNEL JSON`: publish one message from the command line."""

from __future__ import annotations

import json
import sys

import psycopg

from prefork.bus.store import write
from prefork.commands.dbcli import CommandError, command_database
from prefork.config.loader import Loaded
from prefork.logs import setup_logging

EXIT_USAGE = 2


def bus_send(loaded: Loaded, channel: str, payload: str) -> int:
    setup_logging("warning", "")
    try:
        message = json.loads(payload)
    except ValueError as exc:
        print(f"prefork: error: the message is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with command_database(loaded.settings, "the realtime bus") as runtime, \
                psycopg.connect(runtime.target.conninfo) as conn:
            write(conn, channel, message)  # committed when the block ends
    except CommandError as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"published on {channel!r}")
    return 0
