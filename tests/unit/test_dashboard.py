"""The dashboard's password in-process: plain and Odoo-hashed admin_passwd, the per-address
limit on failed checks, the signed cookie."""

from __future__ import annotations

import base64
import hashlib

from prefork.ops.adminpass import matches
from prefork.ops.dashboard_auth import DashboardAuth
from prefork.ops.dashboard_cookie import NAME, DashboardCookie, cookie_key
from prefork.ops.guess_limit import FailureLimit


def _ab64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")


def odoo_hash(password: str, rounds: int = 1000) -> str:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return f"$pbkdf2-sha512${rounds}${_ab64(salt)}${_ab64(digest)}"


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()


def test_admin_passwd_plain_and_odoo_hash() -> None:
    hashed = odoo_hash("s3cret", rounds=600)
    assert matches(hashed, "s3cret") and not matches(hashed, "wrong")
    assert matches("plain", "plain") and not matches("plain", "plai")
    assert not matches("", "")  # no password configured: no access
    short = hashed[:-8]  # a digest of the wrong length, rounds no C long holds, no digest
    for configured in (short, hashed.replace("$600$", f"${2**64}$"), "$pbkdf2-sha512$1$x"):
        assert not matches(configured, "s3cret")
    for given in ("\ud800", "é" * 1000, "\x00"):  # never raises on what a client sends
        assert not matches(hashed, given) and not matches("plain", given)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_checks_are_limited_per_address_without_hashing() -> None:
    checked: list[str] = []
    clock = Clock()

    def matcher(configured: str, given: str) -> bool:
        checked.append(given)
        return given == configured

    auth = DashboardAuth("pw", b"secret", matcher, FailureLimit(clock=clock))

    def attempt(address: str, header: str, cookie: str = "") -> tuple[bool, int, str]:
        environ = {
            "REMOTE_ADDR": address,
            "HTTP_AUTHORIZATION": header,
            "HTTP_COOKIE": cookie,
            "wsgi.url_scheme": "http",
        }
        return auth.check(environ)

    assert attempt("10.0.0.1", basic("pw"))[0]  # a success: no count kept
    for index in range(10):
        clock.now += 1
        assert attempt("10.0.0.2", basic(f"guess{index}")) == (False, 0, "")
    clock.now += 1
    assert attempt("10.0.0.2", basic("pw")) == (False, 50, "")  # the first frees at +60 s
    assert len(checked) == 11  # the 11th was refused without a check
    allowed, wait, cookie = attempt("10.0.0.3", basic("pw"))  # another address, served
    assert allowed and not wait and cookie.startswith(f"{NAME}=")
    assert attempt("10.0.0.2", basic("pw"))[1] == 50  # others' success clears nothing
    polled = attempt("10.0.0.2", basic("pw"), cookie.split(";")[0])
    assert polled == (True, 0, "") and len(checked) == 12  # the cookie: no password check
    for header in [
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"\xff:").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ] * 3:
        attempt("10.0.0.4", header)  # malformed: failures that need no hash
    assert attempt("10.0.0.4", basic("pw"))[1] == 60 and len(checked) == 12
    clock.now += 50
    assert attempt("10.0.0.2", basic("pw"))[0]  # one slot freed
    small = FailureLimit(capacity=3, clock=clock)
    for index in range(5):
        small.take(f"10.1.0.{index}")
    assert small.tracked() == 3  # the oldest addresses forgotten


def test_the_cookie_is_signed_expires_and_follows_the_password() -> None:
    clock = Clock()
    cookie = DashboardCookie(cookie_key(b"secret", "pw"), clock=clock)
    issued = cookie.issue(secure=True)
    value = issued.split(";")[0]
    assert issued.endswith("; Path=/prefork/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure")
    assert "Secure" not in cookie.issue(secure=False)
    assert cookie.valid(f"session_id=abc; {value}")
    other = DashboardCookie(cookie_key(b"secret", "new password"), clock=clock)
    forged = value[:-1] + ("A" if value[-1] != "A" else "B")
    for header in (
        "",
        value[:-1],
        forged,
        f"{NAME}=99999999999.{value.split('.')[1]}",
        f"{NAME}=١٢.{value.split('.')[1]}",
        other.issue(secure=False).split(";")[0],
    ):
        assert not cookie.valid(header), header
    clock.now += 3600
    assert not cookie.valid(value)  # expired
