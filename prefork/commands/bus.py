"""`prefork bus send CHANNEL JSON`: publish one message from the command line."""

from __future__ import annotations

import json
import sys
from typing import Any

from prefork.bus.store import channel_name, write
from prefork.commands.dbcli import CommandError, command_database
from prefork.config.loader import Loaded
from prefork.db import roles
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
        channel = channel_name(_record_channel(channel))
    except (ValueError, TypeError) as exc:
        print(
            f"prefork: error: a channel starting with '[' is a record channel, a JSON "
            f'list such as ["db", "res.partner", 7]: {exc}',
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        with (
            command_database(loaded.settings, "the realtime bus") as runtime,
            roles.connect(runtime.target.conninfo, roles.CLI) as conn,
        ):
            write(conn, channel, message)  # committed when the block ends
    except CommandError as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"published on {channel!r}")
    return 0


def _record_channel(text: str) -> Any:
    """A record channel however it is spaced (["db", "res.partner", 7]), so that it reaches
    the subscribers of its compact name; any other text is a channel name as it is."""
    if not text.lstrip().startswith("["):
        return text
    value = json.loads(text)
    if not isinstance(value, list) or not value:
        raise ValueError("not a non-empty list")
    return value
