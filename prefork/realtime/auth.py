"""Who a realtime client is, and which channels it may join: two application hooks.

`bus_auth(cookies, headers)` returns an identity (any object) or None when the client's
session is invalid or expired; it is asked again on every client message and every
SESSION_CHECK seconds, and None then closes the websocket with 4001. `bus_channels(identity,
channels)` returns the channels that identity may join. Both may block (they may read a
session store): they run in a thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from prefork.config.settings import Settings
from prefork.wsgi.loader import load_callable

SESSION_CHECK = 60.0
SESSION_COOKIE = "session_id"


@dataclass(frozen=True)
class Anonymous:
    """The default identity: a client known only by its session cookie, if any."""

    session_id: str = ""


def accept_everyone(cookies: Mapping[str, str], headers: Mapping[str, str]) -> Any:
    return Anonymous(cookies.get(SESSION_COOKIE, ""))


def allow_every_channel(identity: Any, channels: list[str]) -> list[str]:
    return channels


class Gate:
    """The two hooks, loaded once in the realtime process."""

    def __init__(self, settings: Settings) -> None:
        self._auth: Callable[..., Any] = (load_callable(settings.bus_auth, "bus_auth")
                                          if settings.bus_auth else accept_everyone)
        self._channels: Callable[..., list[str]] = (
            load_callable(settings.bus_channels, "bus_channels") if settings.bus_channels
            else allow_every_channel)

    async def identify(self, headers: Mapping[str, str]) -> Any:
        return await asyncio.to_thread(self._auth, parse_cookies(headers.get("cookie", "")),
                                       headers)

    async def allowed(self, identity: Any, channels: list[str]) -> list[str]:
        allowed = await asyncio.to_thread(self._channels, identity, list(channels))
        return [c for c in allowed if isinstance(c, str)]


def parse_cookies(header: str) -> dict[str, str]:
    cookie = SimpleCookie()
    try:
        cookie.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in cookie.items()}


def same_site(headers: Mapping[str, str], proxy_mode: bool) -> bool:
    """A browser's Origin must name the host the client asked for (any port: the page
    comes from http_port, the websocket goes to gevent_port). No Origin: not a browser."""
    origin = headers.get("origin")
    if not origin:
        return True
    host = headers.get("host", "")
    if proxy_mode:
        host = headers.get("x-forwarded-host", host)
    return _hostname(origin.partition("://")[2]) == _hostname(host)


def _hostname(netloc: str) -> str:
    netloc = netloc.split("/", 1)[0].lower()
    if netloc.startswith("["):
        return netloc.partition("]")[0] + "]"
    return netloc.partition(":")[0]
