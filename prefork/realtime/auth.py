"""Who a realtime client is, and which channels it may join: two application hooks.

`bus_auth(cookies, headers)` returns an identity (any object) or None when the client's
session is invalid or expired; it is asked again on every client message and every
SESSION_CHECK seconds, and None then closes the websocket with 4001. The default reads the
session cookie and the shared session store, as the HTTP workers do: no cookie is an
anonymous client, a valid one is a SessionIdentity with the session's data, and a forged,
expired or unknown one is None. `bus_channels(identity, channels)` returns the channels
that identity may join. Both may block (they read a store): they run in a thread, never on
the event loop. A store that cannot be reached raises StoreUnavailable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prefork.config.settings import Settings
from prefork.sessions import signing
from prefork.sessions.stores import make_store
from prefork.wsgi.cookies import parse_cookies
from prefork.wsgi.loader import load_callable

SESSION_CHECK = 60.0


@dataclass(frozen=True)
class Anonymous:
    """A client without a session cookie."""


@dataclass(frozen=True)
class SessionIdentity:
    """A client with a valid session: its id and its data when it connected."""

    session_id: str
    data: dict[str, Any]


class SessionAuthenticator:
    """The default bus_auth: the session cookie, checked against the session store."""

    def __init__(self, settings: Settings) -> None:
        self.store = make_store(settings)
        self.key = signing.secret(settings)
        self.cookie = settings.session_cookie_name

    def __call__(self, cookies: Mapping[str, str], headers: Mapping[str, str]) -> Any:
        value = cookies.get(self.cookie)
        if not value:
            return Anonymous()
        sid = signing.verify(value, self.key)
        found = self.store.peek(sid) if sid else None
        return SessionIdentity(sid, found[0]) if sid and found else None


def allow_every_channel(identity: Any, channels: list[str]) -> list[str]:
    return channels


class Gate:
    """The two hooks, loaded once in the realtime process."""

    def __init__(self, settings: Settings) -> None:
        self._auth: Callable[..., Any] = (load_callable(settings.bus_auth, "bus_auth")
                                          if settings.bus_auth else
                                          SessionAuthenticator(settings))
        self._channels: Callable[..., list[str]] = (
            load_callable(settings.bus_channels, "bus_channels") if settings.bus_channels
            else allow_every_channel)

    async def identify(self, headers: Mapping[str, str]) -> Any:
        return await asyncio.to_thread(self._auth, parse_cookies(headers.get("cookie", "")),
                                       headers)

    async def allowed(self, identity: Any, channels: list[str]) -> list[str]:
        allowed = await asyncio.to_thread(self._channels, identity, list(channels))
        return [c for c in allowed if isinstance(c, str)]


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
