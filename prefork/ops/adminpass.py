"""Checking `admin_passwd`: plain text, or the pbkdf2-sha512 hash Odoo writes into its
configuration file ($pbkdf2-sha512$ROUNDS$SALT$HASH, passlib's adapted base64)."""

from __future__ import annotations

import base64
import hashlib
import hmac


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
