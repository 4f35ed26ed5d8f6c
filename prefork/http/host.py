"""What a request says about the host it is for (RFC 9112 3.2, RFC 3986 3.2.2).

A `Host` value is `uri-host [":" port]`: a bracketed IP literal or a reg-name (which covers
IPv4 addresses), never userinfo. The empty value is valid (a target without an authority).
The HTTP parser and the realtime process judge a Host value with the same expression.
"""

from __future__ import annotations

import re

# reg-name: unreserved, pct-encoded and sub-delims (which are why '=' and ',' are allowed);
# no '@' (userinfo would let a value name two hosts), no space, no '/' or '?'. Written as
# runs of plain characters between escapes: an alternation per character is 6x slower,
# and this runs for every request.
_PLAIN = r"[A-Za-z0-9\-._~!$&'()*+,;=]*"
_REG_NAME = rf"{_PLAIN}(?:%[0-9A-Fa-f]{{2}}{_PLAIN})*"
_IP_LITERAL = r"\[(?:[0-9A-Fa-f:.]+|v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+)\]"
HOST_RE = re.compile(rf"(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]{{0,5}})?")
# An absolute-form target's authority ends at the first '/', '?' or '#'; userinfo, when
# present, ends at its last '@' (RFC 3986 3.2).
_AUTHORITY_END_RE = re.compile(r"[/?#]")


def valid_host(value: str) -> bool:
    return HOST_RE.fullmatch(value) is not None


def target_authority(target: str, scheme_end: int) -> str | None:
    """The host[:port] of an absolute-form target whose "scheme://" ends at `scheme_end`,
    without any userinfo; None when that is not a valid, non-empty host."""
    end = _AUTHORITY_END_RE.search(target, scheme_end)
    authority = target[scheme_end : end.start() if end is not None else len(target)]
    authority = authority.rpartition("@")[2]
    if not authority or authority[0] == ":" or not valid_host(authority):
        return None
    return authority
