"""Who a realtime client is, and which channels it may join: two application hooks.

`bus_auth(cookies, headers)` returns an identity (any object), or None when the client has
no valid session. The default reads the session cookie and the shared session store, as the
HTTP workers do: a valid cookie is a SessionIdentity with the session's data; no cookie, or
a forged, expired or unknown one, is None. A client without a valid session is served as an
Anonymous one, as Odoo 16+ serves an unknown session id as a fresh public session
(`odoo.http.Request._get_session_and_dbname`). A client that connected with a session is
asked again on every message and every SESSION_CHECK seconds; None then closes its
websocket with 4001, as Odoo does when a connected session is gone from the store or fails
`check_session` (`WebsocketRequest._get_session`, `ir.websocket._authenticate`).

`bus_channels(identity, channels)` returns the channels that identity may join (it may add
its own, as Odoo's `_build_bus_channel_list` adds the session's record channels). Record
channels (see protocol.is_record_channel) are never given to anonymous clients, and to
others only when the hook returns them: without a hook, clients get the string channels
they asked for. Every client also gets the `broadcast` channel. Both hooks may block (they
read a store): they run in a thread, never on the event loop. A store that cannot be reached
raises StoreUnavailable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prefork.config.settings import Settings
from prefork.realtime.protocol import BROADCAST, is_record_channel
from prefork.sessions import signing
from prefork.sessions.stores import make_store
from prefork.wsgi.cookies import parse_cookies
from prefork.wsgi.loader import load_callable

SESSION_CHECK = 60.0


@dataclass(frozen=True)
class Anonymous:
    """A client without a valid session."""


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
        sid = signing.verify(cookies.get(self.cookie, ""), self.key)
        found = self.store.peek(sid) if sid else None
        return SessionIdentity(sid, found[0]) if sid and found else None


class Gate:
    """The two hooks, loaded once in the realtime process."""

    def __init__(self, settings: Settings) -> None:
        self._auth: Callable[..., Any] = (
            load_callable(settings.bus_auth, "bus_auth")
            if settings.bus_auth
            else SessionAuthenticator(settings)
        )
        self._channels: Callable[..., list[str]] | None = (
            load_callable(settings.bus_channels, "bus_channels") if settings.bus_channels else None
        )

    async def identify(self, headers: Mapping[str, str]) -> Any:
        """The client's identity, None when it has no valid session."""
        return await asyncio.to_thread(
            self._auth, parse_cookies(headers.get("cookie", "")), headers
        )

    async def connect(self, headers: Mapping[str, str]) -> Any:
        """The identity a client is served with: Anonymous() without a valid session."""
        identity = await self.identify(headers)
        return Anonymous() if identity is None else identity

    async def allowed(self, identity: Any, channels: list[str]) -> list[str]:
        """The channels this client joins, from those it asked for (names)."""
        if self._channels is None:
            granted = [c for c in channels if not is_record_channel(c)]
        else:
            granted = await asyncio.to_thread(self._channels, identity, list(channels))
            granted = [c for c in granted if isinstance(c, str)]
            if isinstance(identity, Anonymous):
                granted = [c for c in granted if not is_record_channel(c)]
        return list(dict.fromkeys([*granted, BROADCAST]))


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
