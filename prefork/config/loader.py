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
from prefork.config.odoo_keys import ODOO, ODOO_KEYS, TRUE_ONLY, OdooKey
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
    # Set when an older or Odoo name gave this value (xmlrpc_port for http_port): in the
    # same layer, the option's own name wins whatever the order (Odoo's config.py).
    via: str = ""


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
    notes: list[str] = []
    settings = resolve([file_layer, _env_layer(environ), list(cli)], sources, notes)
    return Loaded(settings, path, warnings, sources, notes)


def resolve(layers: list[list[Assignment]], sources: dict[str, str] | None = None,
            notes: list[str] | None = None) -> Settings:
    """Apply layers over the defaults, each later layer overriding the earlier ones.

    `sources`, when given, receives where each non-default value came from; `notes`, the
    defaults that followed another option (memory limits).
    """
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer in layers:
        for item in modern_names_win(layer):
            values[item.key] = _convert(item)
            origin[item.key] = item.where
    for note in memory_defaults(values, origin):
        if notes is not None:
            notes.append(note)
    if sources is not None:
        sources.update(origin)
    settings = Settings(**values)
    _check_consistency(settings, origin)
    return dataclasses.replace(settings, data_dir=os.path.expanduser(settings.data_dir))


def modern_names_win(layer: list[Assignment]) -> list[Assignment]:
    """Drop a value given by an older name when the same layer names the option itself."""
    direct = {item.key for item in layer if not item.via}
    return [item for item in layer if not item.via or item.key not in direct]


# Odoo's defaults, 2048 MiB soft for 2560 MiB hard: the soft limit is 80% of the hard one.
SOFT_PER_HARD = (4, 5)


def memory_defaults(values: dict[str, Any], origin: dict[str, str]) -> list[str]:
    """When one memory limit is set and the other's default would contradict it, that
    default follows it (80% / 125%); the note says so."""
    soft, hard = "limit_memory_soft", "limit_memory_hard"
    num, den = SOFT_PER_HARD
    if hard in values and soft not in values and 0 < values[hard] < SPECS[soft].default:
        values[soft] = values[hard] * num // den
        origin[soft] = "default: 80% of limit_memory_hard"
        return [f"limit_memory_soft not set: {_mib(values[soft])} (80% of limit_memory_hard "
                f"{_mib(values[hard])}) instead of its default {_mib(SPECS[soft].default)}"]
    if soft in values and hard not in values and values[soft] > SPECS[hard].default:
        values[hard] = values[soft] * den // num
        origin[hard] = "default: 125% of limit_memory_soft"
        return [f"limit_memory_hard not set: {_mib(values[hard])} (125% of limit_memory_soft "
                f"{_mib(values[soft])}) instead of its default {_mib(SPECS[hard].default)}"]
    return []


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


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
        key = _canonical_key(entry.key, entry.value, where, warnings)
        if key is not None and _odoo_unset(key, entry.value):
            continue  # odoo.conf writes False or None for an option that is not set
        if key is not None:
            via = entry.key if key != entry.key else ""
            layer.append(Assignment(key, entry.value, where, f"option {entry.key!r}", via))
    for item in layer:
        if item not in modern_names_win(layer):
            warnings.append(f"{item.where}: option {item.via!r} is ignored: {item.key!r} is "
                            f"also set ({_where_set(layer, item.key)})")
    return layer


def _where_set(layer: list[Assignment], key: str) -> str:
    return next(item.where for item in layer if item.key == key and not item.via)


def _odoo_unset(key: str, raw: str) -> bool:
    return raw.strip() in ("False", "None") and SPECS[key].kind is not BOOLEAN


def _canonical_key(key: str, raw: str, where: str, warnings: list[str]) -> str | None:
    """The prefork option `key` sets, or None when it sets none (Odoo-only, an addon's)."""
    if key in SPECS:
        return key
    if key in ALIASES:
        target = ALIASES[key]
        warnings.append(f"{where}: option {key!r} is deprecated, use {target!r} instead")
        return target
    if key in ODOO:
        return odoo_target(ODOO[key], raw, where, warnings, repr(key))
    _unknown_key(key, where, warnings)
    return None


def odoo_target(entry: OdooKey, raw: str, where: str, warnings: list[str],
                name: str) -> str | None:
    """The prefork option an Odoo key or flag (`name`: how messages call it) sets, per the
    Odoo table; None when it sets none."""
    if entry.status == TRUE_ONLY:
        try:
            enabled = BOOLEAN.parse(raw)
        except ValueError:
            raise ConfigError(f"option {name}: expected True or False, got {raw!r}",
                              where=where) from None
        if not enabled:
            given = f"{name} ({entry.key} = False)" if name.startswith("-") else f"{name} = False"
            raise ConfigError(f"option {given} is not supported: {entry.note}", where=where)
        return None  # True is what prefork does anyway
    if entry.target in SPECS:
        return entry.target
    warnings.append(f"{where}: Odoo option {name} is ignored by prefork ({entry.note})")
    return None


# Closer than this to a prefork option is a typo (an error); anything else unknown is an
# addon's key, which Odoo loads with a warning, so prefork does too.
TYPO_CUTOFF = 0.75


def _unknown_key(key: str, where: str, warnings: list[str]) -> None:
    known = [*SPECS, *ALIASES, *(e.key for e in ODOO_KEYS if e.target)]
    close = difflib.get_close_matches(key, known, n=1, cutoff=TYPO_CUTOFF)
    if close:
        raise ConfigError(f"unknown option {key!r}; did you mean {close[0]!r}?", where=where)
    warnings.append(f"{where}: unknown option {key!r} (neither prefork's nor Odoo's; an "
                    "addon's?) is ignored")


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


def _check_consistency(settings: Settings, origin: dict[str, str]) -> None:
    if settings.multiprocessing and settings.db_uri.startswith("sqlite:"):
        raise ConfigError(SQLITE_REFUSED)
    if settings.multiprocessing and settings.session_store == "memory":
        raise ConfigError(MEMORY_SESSIONS_REFUSED)
    soft, hard = settings.limit_memory_soft, settings.limit_memory_hard
    if hard and soft > hard:  # a hard limit of 0 is none (as in Odoo)
        raise ConfigError(
            f"option 'limit_memory_soft' ({soft} bytes, {_mib(soft)}, from "
            f"{origin.get('limit_memory_soft', 'default')}) must not exceed "
            f"'limit_memory_hard' ({hard} bytes, {_mib(hard)}, from "
            f"{origin.get('limit_memory_hard', 'default')})"
        )

