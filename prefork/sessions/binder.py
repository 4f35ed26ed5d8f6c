"""Gives every request a session (environ["prefork.session"]) and its cookie.

The session is read from the store only if the application touches it, and written only
when it was modified, at start_response (the cookie goes with the headers, so changes made
after start_response are not kept). The cookie is HttpOnly and SameSite=Lax, Secure when
the request came over HTTPS (with proxy_mode, as the proxy says), and carries a signed id;
a tampered, expired or unknown one silently gets a new session.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

from prefork.config import Settings
from prefork.sessions import signing
from prefork.sessions.session import Found, Session
from prefork.sessions.stores import Store
from prefork.wsgi.cookies import parse_cookies


class SessionBinder:
    """Called by the WSGI handler with each request's environ and response, before the
    application. Not a middleware: wrapping start_response cost every request a call (8% of
    a hello-world worker); the Set-Cookie header is added at start_response only when the
    application touched its session."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.key = signing.secret(settings)
        self.name = settings.session_cookie_name
        self.path = settings.session_cookie_path
        self.max_age = settings.session_max_lifetime

    def __call__(self, environ: dict[str, Any], response: Any) -> None:
        environ["prefork.session"] = RequestSession(self, environ, response)

    def _headers(self, session: Session, secure: bool) -> list[tuple[str, str]]:
        set_cookie = self._commit(session, secure)
        return [("Set-Cookie", set_cookie)] if set_cookie else []

    def _find(self, header: str) -> Found | None:
        """The session the request's cookie names: parsed only when the application first
        touches its session, so requests that never do pay nothing."""
        cookie = parse_cookies(header).get(self.name) if self.name in header else None
        sid = signing.verify(cookie, self.key) if cookie else None
        found = self.store.load(sid) if sid else None
        return (sid, *found) if sid and found else None

    def _commit(self, session: Session, secure: bool) -> str:
        """Write what changed; the Set-Cookie value, or '' when the cookie stays as it is."""
        if not session.loaded:
            return ""
        if session.replaced:
            self.store.delete(session.replaced)
        if session.destroyed:
            if session.sid and not session.new:
                self.store.delete(session.sid)
            return self._cookie("", secure, max_age=0)
        if not session.modified:
            return ""
        sid = session.ensure_id()
        self.store.save(sid, session.data(), session.created)
        return self._cookie(signing.sign(sid, self.key), secure, self.max_age)

    def _cookie(self, value: str, secure: bool, max_age: int) -> str:
        cookie: SimpleCookie = SimpleCookie()
        cookie[self.name] = value
        morsel = cookie[self.name]
        morsel["path"] = self.path
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        if secure:
            morsel["secure"] = True
        if max_age or not value:
            morsel["max-age"] = max_age
        return morsel.OutputString()


class RequestSession(Session):
    """The session of one request. It keeps what it needs of the request, not the environ
    (which holds it): no reference cycle, so an untouched session is freed with its request
    instead of waiting for the garbage collector."""

    def __init__(self, binder: SessionBinder, environ: dict[str, Any], response: Any) -> None:
        self._binder = binder
        self._cookie = environ.get("HTTP_COOKIE", "")
        self._secure = environ["wsgi.url_scheme"] == "https"
        self._response = response

    def _find(self) -> Found | None:
        return self._binder._find(self._cookie)

    def _touched(self) -> None:
        # The response now refers to this session (to write it at start_response) and this
        # session to the response: a cycle, but only for requests that use their session.
        self._response.header_hook = lambda: self._binder._headers(self, self._secure)
