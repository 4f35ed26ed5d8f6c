"""Value kinds: how a raw string from a file, the environment or a flag becomes a typed value.

Each kind states what it expects in words, so every error can say
"expected <what>, got '<raw>'" without the option knowing how it parses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_SIZE_RE = re.compile(r"(\d+)\s*([kKmMgGtT]i?[bB]?|[bB])?")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


@dataclass(frozen=True)
class Kind(Generic[T]):
    """A parser from text plus the words that describe what it accepts."""

    expected: str
    parse_text: Callable[[str], T]
    unit: str = ""

    def parse(self, raw: str) -> T:
        """Return the typed value; raise ValueError (message unused) when `raw` is not one."""
        return self.parse_text(raw.strip())


def _whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError(text)
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(text)


def _size(text: str) -> int:
    match = _SIZE_RE.fullmatch(text)
    if not match:
        raise ValueError(text)
    unit = (match.group(2) or "")[:1].lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _workers(text: str) -> int:
    """`auto` is kept as -1 until the sizing rule replaces it at start."""
    if text.lower() == "auto":
        return -1
    return _whole(0)(text)


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0 or value != value:
        raise ValueError(text)
    return value


def _text(text: str) -> str:
    return text


# sun_path holds 108 bytes on Linux, the terminating NUL included.
UNIX_PATH_MAX = 107
UNIX_PREFIX = "unix:"


def _interface(text: str) -> str:
    """An address as it is, or `unix:PATH` with PATH made absolute (from the working
    directory), so that every process and the generated nginx site name one file."""
    if not text.startswith(UNIX_PREFIX):
        if "/" in text:
            raise ValueError(text)
        return text
    path = text[len(UNIX_PREFIX) :]
    if not path or "\0" in path:
        raise ValueError(text)
    path = os.path.abspath(os.path.expanduser(path))
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ValueError(text)
    return UNIX_PREFIX + path


def _file_mode(text: str) -> str:
    """Kept as text (0660), as it is written and shown; int(value, 8) where it is used."""
    if not re.fullmatch(r"(0o)?[0-7]{1,4}", text):
        raise ValueError(text)
    return f"{int(text.removeprefix('0o'), 8):04o}"


def _app_ref(text: str) -> str:
    if text and not re.fullmatch(r"[\w.]+(:[\w.]+)?", text):
        raise ValueError(text)
    return text


def _session_store(text: str) -> str:
    if text in ("file", "memory") or text.startswith(("redis://", "rediss://", "unix://")):
        return text
    raise ValueError(text)


def _networks(text: str) -> str:
    import ipaddress

    for part in text.split(","):
        if part.strip():
            ipaddress.ip_network(part.strip(), strict=False)  # ValueError when not one
    return text


# Odoo's levels (odoo/netsvc.py PSEUDOCONFIG_MAPPER, Odoo 15-18) -> prefork's: the debug_*
# variants set odoo loggers to DEBUG; runbot sets them to 25 (logging.RUNBOT); test and notset
# have no entry there, so Odoo logs them as info.
_LOG_LEVELS = {
    "debug": "debug",
    "debug_rpc_answer": "debug",
    "debug_rpc": "debug",
    "debug_sql": "debug",
    "info": "info",
    "test": "info",
    "notset": "info",
    "runbot": "runbot",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "critical": "critical",
}


def _log_level(text: str) -> str:
    level = _LOG_LEVELS.get(text.lower())
    if level is None:
        raise ValueError(text)
    return level


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _sslmode(text: str) -> str:
    if text not in _SSLMODES:
        raise ValueError(text)
    return text


# Odoo 15-18's --dev features (odoo/tools/config.py and where config['dev_mode'] is read):
# 'all' adds pdb, reload, qweb and xml; werkzeug is Odoo 15's, access Odoo 17+'s (an
# AccessError logged with its traceback), replica Odoo 18's (the read-only replica used
# without db_replica_host). prefork acts on reload (and all); the rest load and do nothing.
DEV_MODE_VALUES = (
    "all",
    "reload",
    "qweb",
    "xml",
    "werkzeug",
    "access",
    "replica",
    "pdb",
    "ipdb",
    "pudb",
    "wdb",
)


def _dev_mode(text: str) -> str:
    """'reload, xml' -> 'reload,xml': the features as Odoo's --dev lists them."""
    features = [part.strip() for part in text.split(",") if part.strip()]
    if any(feature not in DEV_MODE_VALUES for feature in features):
        raise ValueError(text)
    return ",".join(dict.fromkeys(features))


def _db_uri(text: str) -> str:
    if text and not re.match(r"(postgres|postgresql)://|sqlite:///.", text):
        raise ValueError(text)
    return text


WHOLE = Kind("a whole number >= 0", _whole(0))
POSITIVE = Kind("a whole number >= 1", _whole(1))
PORT = Kind("a port number between 0 and 65535", _whole(0, 65535))
WORKERS = Kind("a whole number >= 0 or 'auto'", _workers)
LIMIT_SECONDS = Kind("a whole number of seconds >= 0", _whole(0), unit="seconds")
CRON_SECONDS = Kind("a whole number of seconds, or -1", _whole(-1), unit="seconds")
SECONDS = Kind("a number of seconds >= 0", _seconds, unit="seconds")
SIZE = Kind("a size in bytes, optionally with a suffix K, M or G (e.g. 640M)", _size, unit="bytes")
BOOLEAN = Kind("True or False", _boolean)
TEXT = Kind("text", _text)
INTERFACE = Kind(
    "an IP address, empty (all IPv4 interfaces), or unix:PATH (a Unix socket, "
    f"at most {UNIX_PATH_MAX} bytes)",
    _interface,
)
FILE_MODE = Kind("an octal file mode such as 0660", _file_mode)
APP = Kind("a WSGI application as 'module:callable'", _app_ref)
SESSION_STORE = Kind("file, memory, or a Redis URL (redis://host:port/db)", _session_store)
NETWORKS = Kind("comma-separated addresses or networks (127.0.0.1, 10.0.0.0/8, ::1)", _networks)
HOOK = Kind("a Python callable as 'module:callable'", _app_ref)
LOG_LEVEL = Kind(
    "one of debug, info, warning, error, critical (or Odoo's debug_rpc_answer, "
    "debug_rpc, debug_sql, runbot, test, notset, warn)",
    _log_level,
)
SSLMODE = Kind("one of " + ", ".join(_SSLMODES), _sslmode)
DEV_MODE = Kind("a comma-separated list of " + ", ".join(DEV_MODE_VALUES), _dev_mode)
DB_URI = Kind("a postgresql://... URI or sqlite:///path (sqlite:////absolute/path)", _db_uri)
