"""The pieces of HTTP's grammar (RFC 9110) that the head and the body readers share."""

from __future__ import annotations

import re

TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
TOKEN_RE = re.compile(rf"[{TCHAR}]+")
# No control character but HTAB (RFC 9110 5.5); CR and LF only as the CRLF line ends,
# which are replaced before the search (a lookaround pattern is several times slower).
CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
