"""What a bus client's messages mean, without I/O: parsing, channel rules, rate limiting.

Invariants the websocket and long-polling endpoints rely on:
- a client message that is not a well-formed event raises Ignored: Odoo 16-18
  (`WebsocketConnectionHandler._serve_forever`) logs such a message and keeps the
  connection, and so does prefork;
- a channel name that starts with "[" is a record channel (Odoo's ("db", "res.partner", 7)
  style, named by its compact JSON text), whether the client sent a list or a string that
  spells one: a string cannot stand in for a record channel;
- the rate limiter refuses a message when the `burst` messages before it all came within
  `burst * delay` seconds (Odoo 16-18 `Websocket._limit_rate`), which is not a token bucket:
  after a burst, the next message is accepted only once the oldest of the burst is that old.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from prefork.bus import store

BROADCAST = "broadcast"  # every client's channel (Odoo's `_build_bus_channel_list`)
OUTDATED_VERSION = "OUTDATED_VERSION"  # close reason, with code 1000 (Odoo 17+)


class Ignored(Exception):
    """A client message that is logged and ignored; the connection stays open."""


def parse_event(text: str | None) -> tuple[str, Any]:
    """(event_name, data) of a websocket message."""
    if text is None:
        raise Ignored("a binary message that is not UTF-8 text")
    try:
        event = json.loads(text)
    except RecursionError:
        raise Ignored("JSON nested too deeply") from None
    except ValueError as exc:
        raise Ignored(f"not JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(event, dict) or not isinstance(event.get("event_name"), str):
        raise Ignored("a JSON message without an event_name")
    return event["event_name"], event.get("data")


def parse_subscription(data: Any) -> tuple[list[str], int]:
    """The (channel names, last id) of a subscribe event's data or a poll's params."""
    if not isinstance(data, dict):
        raise Ignored("subscribe: data is not an object")
    raw, last = data.get("channels"), data.get("last", 0)
    if last is None:
        last = 0
    if not isinstance(raw, list):
        raise Ignored("subscribe: channels is not a list")
    if isinstance(last, bool) or not isinstance(last, int) or last < 0:
        raise Ignored("subscribe: last is not a whole number")
    return [channel_name(c) for c in raw], last


def channel_name(channel: Any) -> str:
    """A requested channel as the bus names it: a string as it is, a list of strings and
    numbers (a record channel) by its compact JSON text."""
    if isinstance(channel, str):
        return channel
    if (
        isinstance(channel, list)
        and channel
        and all(isinstance(part, (str, int)) and not isinstance(part, bool) for part in channel)
    ):
        return store.channel_name(channel)  # the publishers' name for it
    raise Ignored("subscribe: a channel is neither a string nor a list of strings and numbers")


def is_record_channel(name: str) -> bool:
    return name.startswith("[")


class RateLimit:
    """Odoo's websocket rate limit (see the module docstring); burst >= 1."""

    __slots__ = ("_times", "burst", "delay")

    def __init__(self, burst: int, delay: float) -> None:
        self.burst, self.delay = burst, delay
        self._times: deque[float] = deque(maxlen=burst)

    def allow(self, now: float) -> bool:
        if len(self._times) >= self.burst and now - self._times[0] < self.delay * self.burst:
            return False
        self._times.append(now)
        return True
