"""The dashboard's sign-in cookie: once the password was checked, the page's polling
carries a signed expiry instead, so an expensive password hash is computed once per
sign-in (and once an hour), not every 2 s.

The value is `EXPIRY.MAC`: EXPIRY in Unix seconds, MAC an HMAC-SHA256 of it under a key
derived from the server's session secret and the configured password. Every worker (and
every host sharing the secret) derives the same key, so any of them accepts the cookie;
a new password (a reload) changes the key, so older cookies stop opening the dashboard.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable

from prefork.wsgi.cookies import parse_cookies

NAME = "prefork_dashboard"
PATH = "/prefork/"
MAX_AGE = 3600  # seconds
_VALUE = re.compile(r"([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


def cookie_key(secret: bytes, password: str) -> bytes:
    """Deterministic (the same in every worker) and tied to the password."""
    material = b"prefork dashboard cookie\0" + password.encode("utf-8", "surrogatepass")
    return hmac.new(secret, material, hashlib.sha256).digest()


class DashboardCookie:
    # Wall-clock expiry: the value travels to the browser and back to any process or host,
    # which share no monotonic clock.
    def __init__(
        self, key: bytes, max_age: int = MAX_AGE, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key
        self._max_age = max_age
        self._clock = clock

    def issue(self, secure: bool) -> str:
        """The Set-Cookie value of a fresh cookie."""
        value = self.value(int(self._clock()) + self._max_age)
        attributes = [
            f"{NAME}={value}",
            f"Path={PATH}",
            f"Max-Age={self._max_age}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        return "; ".join([*attributes, "Secure"] if secure else attributes)

    def value(self, expires: int) -> str:
        return f"{expires}.{self._mac(expires)}"

    def valid(self, header: str) -> bool:
        """Whether the Cookie header carries an unexpired cookie made with this key."""
        if NAME not in header:
            return False
        match = _VALUE.fullmatch(parse_cookies(header).get(NAME, ""))
        if match is None:
            return False
        expires = int(match.group(1))
        return hmac.compare_digest(match.group(2), self._mac(expires)) and self._clock() < expires

    def _mac(self, expires: int) -> str:
        digest = hmac.new(self._key, str(expires).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
