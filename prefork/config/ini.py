"""A line-numbered reader for odoo.conf-style INI files.

configparser loses line numbers, and every error here must name FILE:LINE, so the format is
read by hand: `[section]` headers, `key = value` (or `key: value`), full-line comments starting
with `#` or `;`, and ` #` / ` ;` comments after a value, as odoo.conf files carry them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefork.config.errors import ConfigError

_SECTION_RE = re.compile(r"\[\s*([^\]]+?)\s*\]")
_ASSIGN_RE = re.compile(r"([A-Za-z_][\w.-]*)\s*[=:]\s?(.*)")
_INLINE_COMMENT_RE = re.compile(r"\s[#;].*$")


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


def read_section(path: str, section: str = "options") -> list[Entry]:
    """Entries of `section` in file order; other sections are left to their owners."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file: {exc.strerror}", where=path) from None
    except UnicodeDecodeError:
        raise ConfigError("configuration file is not UTF-8 text", where=path) from None
    return _parse(path, text, section)


def _parse(path: str, text: str, wanted: str) -> list[Entry]:
    entries: list[Entry] = []
    current: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        header = _SECTION_RE.fullmatch(stripped)
        if header:
            current = header.group(1)
            continue
        match = _ASSIGN_RE.fullmatch(stripped)
        if not match:
            raise ConfigError(
                f"expected '[section]' or 'key = value', got {stripped!r}",
                where=f"{path}:{number}",
            )
        if current is None:
            raise ConfigError(
                f"'{match.group(1)}' comes before any section; put options under [{wanted}]",
                where=f"{path}:{number}",
            )
        if current == wanted:
            value = _INLINE_COMMENT_RE.sub("", match.group(2)).strip()
            entries.append(Entry(match.group(1), value, number))
    return entries
