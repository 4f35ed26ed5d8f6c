"""What a database failure means to prefork, and how it is told in one log line."""

from __future__ import annotations

import re

import psycopg
from psycopg_pool import PoolTimeout

# Connection failures and server shutdowns (SQLSTATE classes 08 and 57P0x): the database is
# unavailable, not the request wrong.
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


class DatabaseUnavailable(Exception):
    """No connection could be had in time, or the server went away: answered with 503."""


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, (DatabaseUnavailable, PoolTimeout)):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith(_UNAVAILABLE_STATES)
    return False


def one_line(exc: BaseException) -> str:
    """libpq's multi-line messages as one log line."""
    return re.sub(r"\s+", " ", str(exc)).strip()
