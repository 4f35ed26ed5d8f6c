"""Session ids and the signed cookie value that carries them.

An id is 256 random bits (secrets.token_urlsafe(32)); the cookie holds the id and an
HMAC-SHA256 of it under the server's secret, so a forged or altered cookie is recognised
without asking the store. The secret is `session_secret`, else a random one kept in
data_dir/session.secret (created once, readable by the server's user only): hosts that
share sessions must share the secret, so set `session_secret` on each of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile

from prefork.config import Settings
from prefork.datadir import private_dir

SECRET_FILE = "session.secret"
_ID_LENGTH = 43  # token_urlsafe(32)
_cache: dict[str, bytes] = {}


def new_id() -> str:
    return secrets.token_urlsafe(32)


def sign(sid: str, key: bytes) -> str:
    return f"{sid}.{_mac(sid, key)}"


def verify(value: str, key: bytes) -> str | None:
    """The id a cookie value carries, or None when it was not made with this key."""
    sid, _, mac = value.partition(".")
    # compare_digest raises on non-ASCII text, which a client's cookie may carry.
    if len(sid) != _ID_LENGTH or not mac.isascii() or not hmac.compare_digest(mac, _mac(sid, key)):
        return None
    return sid


def _mac(sid: str, key: bytes) -> str:
    digest = hmac.new(key, sid.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def secret(settings: Settings) -> bytes:
    """The signing key: the option, else the data_dir file, created by whoever comes first."""
    if settings.session_secret:
        return settings.session_secret.encode()
    path = os.path.join(settings.data_dir, SECRET_FILE)
    if path not in _cache:
        _cache[path] = _read_or_create(path)
    return _cache[path]


def _read_or_create(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    private_dir(os.path.dirname(path))
    fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".secret-")
    try:
        os.write(fd, secrets.token_urlsafe(48).encode())
        os.close(fd)
        try:
            os.link(temp, path)  # fails when another process created it first: use theirs
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)
    with open(path, "rb") as f:
        return f.read().strip()
