"""The dashboard's password: which option holds it, and checking it as plain text or as
the pbkdf2-sha512 hash Odoo writes into its configuration file
($pbkdf2-sha512$ROUNDS$SALT$HASH, passlib's adapted base64)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from prefork.config import Settings

# odoo/tools/config.py (15.0-18.0) defaults admin_passwd to 'admin', and many odoo.conf files
# still carry it, plain or hashed by Odoo's database manager: it must not open the dashboard.
ODOO_DEFAULT = "admin"
REFUSED = (
    "admin_passwd is Odoo's default 'admin': it does not open the dashboard at "
    "/prefork/; set dashboard_password (or a real admin_passwd) to turn it on"
)


HASH_PREFIX = "$pbkdf2-sha512$"


def dashboard_password(settings: Settings) -> str:
    """What opens /prefork/: dashboard_password, else admin_passwd unless it is Odoo's
    default; empty: the dashboard is off (so is it when that password is a broken hash,
    which nothing could match)."""
    chosen = _chosen(settings)
    return chosen[1] if chosen and well_formed(chosen[1]) else ""


def _chosen(settings: Settings) -> tuple[str, str] | None:
    if settings.dashboard_password:
        return "dashboard_password", settings.dashboard_password
    if settings.admin_passwd and not is_odoo_default(settings.admin_passwd):
        return "admin_passwd", settings.admin_passwd
    return None


def password_warnings(settings: Settings) -> list[str]:
    if not settings.dashboard_password and is_odoo_default(settings.admin_passwd):
        return [REFUSED]
    chosen = _chosen(settings)
    if chosen and not well_formed(chosen[1]):
        return [
            f"{chosen[0]} starts like Odoo's {HASH_PREFIX} hash but is not one "
            f"({HASH_PREFIX}ROUNDS$SALT$HASH): no password could open the dashboard, "
            "so it stays off"
        ]
    return []


def well_formed(configured: str) -> bool:
    """Plain text always is; a hash must have its rounds, salt and digest."""
    if not configured.startswith(HASH_PREFIX):
        return True
    try:
        _, _, rounds, salt, digest = configured.split("$")
        return int(rounds) > 0 and bool(_ab64(salt)) and len(_ab64(digest)) == 64
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def is_odoo_default(configured: str) -> bool:
    """Cached: a hash costs ~0.5 s; the master checks it when it loads the settings and the
    workers it forks inherit the answer."""
    return matches(configured, ODOO_DEFAULT)


def matches(configured: str, given: str) -> bool:
    """Constant time in what is given (compare_digest), never raises: a client's text or
    a broken hash is just no match."""
    if not configured:
        return False
    if configured.startswith(HASH_PREFIX):
        return _pbkdf2(configured, given)
    return hmac.compare_digest(_utf8(configured), _utf8(given))


def _pbkdf2(configured: str, given: str) -> bool:
    try:
        _, _, rounds, salt, digest = configured.split("$")
        expected = hashlib.pbkdf2_hmac("sha512", _utf8(given), _ab64(salt), int(rounds))
        # compare_digest: a digest of another length is refused without a shortcut on the
        # bytes given.
        return hmac.compare_digest(expected, _ab64(digest))
    except (ValueError, OverflowError):  # also rounds beyond what pbkdf2_hmac takes
        return False


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates: bytes, not an error


def _ab64(text: str) -> bytes:
    """passlib's base64: '.' instead of '+', no padding."""
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4))
