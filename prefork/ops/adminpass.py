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
REFUSED = ("admin_passwd is Odoo's default 'admin': it does not open the dashboard at "
           "/prefork/; set dashboard_password (or a real admin_passwd) to turn it on")


def dashboard_password(settings: Settings) -> str:
    """What opens /prefork/: dashboard_password, else admin_passwd unless it is Odoo's
    default; empty: the dashboard is off."""
    if settings.dashboard_password:
        return settings.dashboard_password
    if settings.admin_passwd and not is_odoo_default(settings.admin_passwd):
        return settings.admin_passwd
    return ""


def password_warnings(settings: Settings) -> list[str]:
    if not settings.dashboard_password and is_odoo_default(settings.admin_passwd):
        return [REFUSED]
    return []


@functools.lru_cache(maxsize=4)
def is_odoo_default(configured: str) -> bool:
    """Cached: a hash costs ~0.5 s; the master checks it when it loads the settings and the
    workers it forks inherit the answer."""
    return matches(configured, ODOO_DEFAULT)


def matches(configured: str, given: str) -> bool:
    if not configured:
        return False
    if configured.startswith("$pbkdf2-sha512$"):
        return _pbkdf2(configured, given)
    return hmac.compare_digest(configured.encode(), given.encode())


def _pbkdf2(configured: str, given: str) -> bool:
    try:
        _, _, rounds, salt, digest = configured.split("$")
        expected = hashlib.pbkdf2_hmac("sha512", given.encode(), _ab64(salt), int(rounds))
        return hmac.compare_digest(expected, _ab64(digest))
    except ValueError:
        return False


def _ab64(text: str) -> bytes:
    """passlib's base64: '.' instead of '+', no padding."""
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4))
