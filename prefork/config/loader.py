"""From file, environment and command line to one `Settings`.

Precedence is defaults < file < environment < command line, and it lives in `resolve` only.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefork.config import ini
from prefork.config.errors import ConfigError
from prefork.config.kinds import BOOLEAN
from prefork.config.odoo_keys import ODOO_ONLY_KEYS
from prefork.config.secrets import hide
from prefork.config.settings import ALIASES, SPECS, Settings

CONFIG_ENV = "PREFORK_CONFIG"


@dataclass(frozen=True)
class Assignment:
    """One raw value for one option, with where it came from for error messages."""

    key: str
    raw: str
    where: str
    label: str


@dataclass
class Loaded:
    settings: Settings
    config_path: str | None
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # logged at INFO by `run`


def load_settings(
    cli: Iterable[Assignment] = (),
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Loaded:
    environ = os.environ if environ is None else environ
    path = config_path or environ.get(CONFIG_ENV) or None
    warnings: list[str] = []
    file_layer = _file_layer(path, warnings) if path else []
    sources: dict[str, str] = {}
    settings = resolve([file_layer, _env_layer(environ), list(cli)], sources)
    return Loaded(settings, path, warnings, sources)


def resolve(layers: list[list[Assignment]], sources: dict[str, str] | None = None) -> Settings:
    """Apply layers over the defaults, each later layer overriding the earlier ones.

    `sources`, when given, receives where each non-default value came from.
    """
    values: dict[str, Any] = {}
    for layer in layers:
        for item in layer:
            values[item.key] = _convert(item)
            if sources is not None:
                sources[item.key] = item.where
    settings = Settings(**values)
    _check_consistency(settings)
    return dataclasses.replace(settings, data_dir=os.path.expanduser(settings.data_dir))


def _convert(item: Assignment) -> Any:
    spec = SPECS[item.key]
    try:
        return spec.kind.parse(item.raw)
    except ValueError:
        got = hide(spec.secret, item.raw)  # a mistyped secret is still a secret
        raise ConfigError(
            f"{item.label}: expected {spec.kind.expected}, got {got!r}", where=item.where
        ) from None


def _file_layer(path: str, warnings: list[str]) -> list[Assignment]:
    layer = []
    for entry in ini.read_section(path):
        where = f"{path}:{entry.line}"
        key = _canonical_key(entry.key, where, warnings)
        if key is not None and _odoo_unset(key, entry.value):
            continue  # odoo.conf writes False or None for an option that is not set
        if key is not None:
            layer.append(Assignment(key, entry.value, where, f"option {entry.key!r}"))
    return layer


def _odoo_unset(key: str, raw: str) -> bool:
    return raw.strip() in ("False", "None") and SPECS[key].kind is not BOOLEAN


def _canonical_key(key: str, where: str, warnings: list[str]) -> str | None:
    if key in SPECS:
        return key
    if key in ALIASES:
        target = ALIASES[key]
        warnings.append(f"{where}: option {key!r} is deprecated, use {target!r} instead")
        return target
    if key in ODOO_ONLY_KEYS:
        warnings.append(f"{where}: option {key!r} is an Odoo option that prefork ignores")
        return None
    raise ConfigError(f"unknown option {key!r}{_suggestion(key)}", where=where)


def _suggestion(key: str) -> str:
    known = [*SPECS, *ALIASES, *ODOO_ONLY_KEYS]
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _env_layer(environ: Mapping[str, str]) -> list[Assignment]:
    return [
        Assignment(spec.key, environ[spec.env], f"environment variable {spec.env}",
                   f"option {spec.key!r}")
        for spec in SPECS.values()
        if spec.env in environ
    ]


SQLITE_REFUSED = (
    "multi-processing mode (workers > 0) requires PostgreSQL; SQLite cannot serve "
    "concurrent writes from several processes"
)


MEMORY_SESSIONS_REFUSED = (
    "session_store = memory keeps sessions in one process's memory: with workers > 0 each "
    "worker would have its own and users would lose their session between requests; use "
    "session_store = file (the default, shared by the workers of this host) or "
    "session_store = redis://host:port/db (shared by every host)"
)


def _check_consistency(settings: Settings) -> None:
    if settings.multiprocessing and settings.db_uri.startswith("sqlite:"):
        raise ConfigError(SQLITE_REFUSED)
    if settings.multiprocessing and settings.session_store == "memory":
        raise ConfigError(MEMORY_SESSIONS_REFUSED)
    if settings.limit_memory_soft > settings.limit_memory_hard:
        raise ConfigError(
            f"option 'limit_memory_soft' ({settings.limit_memory_soft} bytes) must not exceed "
            f"'limit_memory_hard' ({settings.limit_memory_hard} bytes)"
        )

