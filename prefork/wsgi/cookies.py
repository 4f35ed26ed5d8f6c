"""Reading the Cookie header, for the session middleware and the realtime process.

Browsers send whatever other applications on the same domain set: JSON values, spaces,
commas, quotes, empty pairs (`a=1;;b=2`), pairs without `=`. `http.cookies.SimpleCookie`
gives up on the whole header at the first of those, which logged users out when another
app set such a cookie. This parser reads the header the way browsers build it (RFC 6265
5.4: `name=value` pairs joined by `; `) and skips only the pairs it cannot use.
"""

from __future__ import annotations

# Controls (RFC 6265 4.1.1 forbids them in values; a browser never sends them): a pair
# holding one is skipped, so a forged header cannot smuggle e.g. a NUL into a session id.
_CONTROLS = frozenset(chr(c) for c in (*range(0x20), 0x7F)) - {"\t"}


def parse_cookies(header: str) -> dict[str, str]:
    """Name -> value. The first pair of a name wins: browsers send the cookie with the
    longest path first (RFC 6265 5.4 step 2), which is the one meant for this request.
    A value in double quotes is unquoted; a pair without a name, without `=`, or with a
    control character is skipped, never the rest of the header."""
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, eq, value = pair.partition("=")
        name = name.strip(" \t")
        if not eq or not name or name in cookies:
            continue
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if _CONTROLS.isdisjoint(name) and _CONTROLS.isdisjoint(value):
            cookies[name] = value
    return cookies
