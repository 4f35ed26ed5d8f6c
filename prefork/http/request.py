"""The request model shared by every worker kind: what the parser produces and apps consume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO


@dataclass(slots=True)
class Request:
    """A request whose head and body have fully arrived.

    Strings are latin-1 decodings of the bytes received, as PEP 3333 wants them. Header
    names are upper-cased; headers whose names contain '_' never get here (they would be
    indistinguishable from '-' once in the WSGI environ).
    """

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: list[tuple[str, str]]
    keep_alive: bool
    body: BinaryIO
    content_length: int
    expect_continue: bool = False
    line: str = ""  # the request line as received, for logs and the scoreboard
    # An absolute-form target's host[:port]: it, not the Host header, names the host
    # (RFC 9112 3.2.2). Empty for the other forms.
    authority: str = ""
