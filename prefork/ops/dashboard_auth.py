"""Who may open the dashboard: a valid sign-in cookie, else HTTP Basic with the
dashboard's password (any user name), checked only while the client's address is under
its failure limit. A successful check issues a cookie; a malformed Authorization header
counts as a failed check.

    auth = DashboardAuth(password, signing.secret(settings))
    access = auth.check(environ)
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, NamedTuple

from prefork.ops.adminpass import matches
from prefork.ops.dashboard_cookie import DashboardCookie, cookie_key
from prefork.ops.guess_limit import FailureLimit


class Access(NamedTuple):
    allowed: bool
    retry_after: int = 0  # > 0: refused without a check, too many failures from there
    set_cookie: str = ""  # to send with the response


REFUSED = Access(False)
SIGNED_IN = Access(True)


class DashboardAuth:
    def __init__(
        self,
        password: str,
        secret: bytes,
        matcher: Callable[[str, str], bool] = matches,
        limit: FailureLimit | None = None,
        cookie: DashboardCookie | None = None,
    ) -> None:
        self._password = password
        self._matcher = matcher
        self.limit = limit or FailureLimit()
        self.cookie = cookie or DashboardCookie(cookie_key(secret, password))

    def check(self, environ: dict[str, Any]) -> Access:
        if self.cookie.valid(environ.get("HTTP_COOKIE", "")):
            return SIGNED_IN
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            return REFUSED  # a first visit: the browser asks for the password
        address = environ.get("REMOTE_ADDR", "")
        wait = self.limit.take(address)
        if wait:
            return Access(False, retry_after=wait)
        given = basic_password(header)
        if given is None or not self._matcher(self._password, given):
            return REFUSED  # counted by take()
        self.limit.refund(address)
        return Access(True, set_cookie=self.cookie.issue(environ["wsgi.url_scheme"] == "https"))


def basic_password(header: str) -> str | None:
    """The password of an HTTP Basic header, None when the header is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # bad base64, non-ASCII text, bytes that are not UTF-8
        return None
    _, colon, password = decoded.partition(":")
    return password if colon else None
