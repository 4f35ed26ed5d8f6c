"""What of an option's value may be shown: `check`, error messages and logs go through here.

The option table says, per option, what is secret (`OptionSpec.secret`); this module is the
one place that turns a value into its shown form, so no caller decides for itself.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from prefork.config.settings import SPECS

HIDDEN = "********"
_SCHEME = re.compile(r"[A-Za-z][\w+.-]*:/*")
# libpq also takes the password as a URI parameter (?password=...) or a key=value pair
# (password='a b'), and so does a mistyped db_uri.
_PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)", re.I)


def shown(key: str, value: object) -> str:
    """`value` of option `key` as `check` prints it: secrets hidden, empty as (empty)."""
    text = str(value)
    if text == "":
        return "(empty)"
    return hide(SPECS[key].secret, text)


def hide(secret: str, text: str) -> str:
    if secret == "value":
        return HIDDEN
    if secret == "credentials":
        return without_password(text)
    if secret == "url":
        return url_host_only(text)
    return text


def without_password(url: str) -> str:
    """The URL with its passwords hidden: of its user part (postgresql://u:pw@h/db), also
    in a mistyped URL (whatever lies between the user's ':' and the last '@'), and any
    password= parameter."""
    url = _PASSWORD_PARAMETER.sub(rf"\g<1>{HIDDEN}", url)
    at = url.rfind("@")
    if at < 0:
        return url
    scheme = _SCHEME.match(url)
    start = scheme.end() if scheme else 0
    colon = url.find(":", start, at)
    if colon < 0:
        return url
    return url[: colon + 1] + HIDDEN + url[at:]


def url_host_only(url: str) -> str:
    """Scheme and host of a URL whose path or query may be a token (webhook services put
    theirs there): https://hooks.example.com/******** ; user and password hidden too."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return HIDDEN
    if not parts.scheme or not host:
        return HIDDEN
    user = f"{HIDDEN}@" if parts.username is not None else ""
    rest = f"/{HIDDEN}" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{user}{host}{port}{rest}"
