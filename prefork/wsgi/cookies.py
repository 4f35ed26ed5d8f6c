"""Reading the Cookie header, for the session middleware and the realtime process."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie


def parse_cookies(header: str) -> dict[str, str]:
    """Name -> value; an unparsable header counts as no cookie at all."""
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in cookie.items()}
