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
from prefork.config.settings import ALIASES, SOFT_PER_HARD, SPECS, Settings

CONFIG_ENV = "PREFORK_CONFIG"


@dataclass(frozen=True)
class Assignment:
    """One raw value for one option, with where it came from for error messages."""

    key: str
    raw: str
    where: str
    label: str
    # The older or Odoo name that gave this value (xmlrpc_port for http_port), if any: see
    # one_name_per_option.
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


def resolve(
    layers: list[list[Assignment]],
    sources: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> Settings:
    """Apply layers over the defaults, each later layer overriding the earlier ones.

    `sources`, when given, receives where each non-default value came from; `notes`, the
    defaults that followed another option (memory limits).
    """
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for layer in layers:
        for item in layer:
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


def one_name_per_option(
    layer: list[Assignment], warnings: list[str], *, in_order: bool = True
) -> list[Assignment]:
    """Where a layer gives one option under two names (xmlrpc_port and http_port, as files
    that Odoo rewrote over the years do), keep one, as Odoo does: a value equal to the
    option's default or to the other name's says nothing (Odoo 19 `_warn_deprecated_options`:
    "surely from a --save"), so the other one applies; two real values: the later one wins,
    as Odoo 15-18 read the file in order (`outdated_options_map`), with a warning. A layer
    that is not `in_order` (the command line, as argparse gathers it) lets the option's own
    name win."""
    kept = list(layer)
    for key in {item.key for item in layer if item.via}:
        old = [item for item in layer if item.key == key and item.via]
        own = [item for item in layer if item.key == key and not item.via]
        if not own:
            continue
        drop = _loser(
            own[-1],
            old[-1],
            layer.index(old[-1]) > layer.index(own[-1]) if in_order else None,
            warnings,
        )
        kept = [item for item in kept if item.key != key or item.via != drop.via]
    return kept


def _loser(
    own: Assignment, old: Assignment, old_is_later: bool | None, warnings: list[str]
) -> Assignment:
    """The one to drop; `old_is_later` None: no order, the option's own name wins."""
    default = SPECS[own.key].default
    own_value, old_value = _convert(own), _convert(old)
    if old_value in (own_value, default):
        return old
    if own_value == default:
        return own
    if old_is_later is None:
        warnings.append(f"{old.where}: {old.label} is ignored: {own.label} also sets {own.key!r}")
        return old
    earlier, later = (own, old) if old_is_later else (old, own)
    warnings.append(
        f"{earlier.where}: {earlier.label} is overridden by {later.label} "
        f"({later.where}): both set {own.key!r}, the later line wins, as in Odoo"
    )
    return earlier


def memory_defaults(values: dict[str, Any], origin: dict[str, str]) -> list[str]:
    """When one memory limit is set and the other's default would contradict it, that
    default follows it (80% / 125%); the note says so. A limit set to its default value
    counts as not set: Odoo's --save writes every option, so an odoo.conf whose hard limit
    was lowered by hand still carries the default soft limit."""
    soft, hard = "limit_memory_soft", "limit_memory_hard"
    num, den = SOFT_PER_HARD
    if values.get(soft) == SPECS[soft].default:
        del values[soft]
    if values.get(hard) == SPECS[hard].default:
        del values[hard]
    if hard in values and soft not in values and 0 < values[hard] < SPECS[soft].default:
        values[soft] = values[hard] * num // den
        origin[soft] = "default: 80% of limit_memory_hard"
        return [
            f"limit_memory_soft not set: {in_mib(values[soft])} (80% of limit_memory_hard "
            f"{in_mib(values[hard])}) instead of its default {in_mib(SPECS[soft].default)}"
        ]
    if soft in values and hard not in values and values[soft] > SPECS[hard].default:
        values[hard] = values[soft] * den // num
        origin[hard] = "default: 125% of limit_memory_soft"
        return [
            f"limit_memory_hard not set: {in_mib(values[hard])} (125% of limit_memory_soft "
            f"{in_mib(values[soft])}) instead of its default {in_mib(SPECS[hard].default)}"
        ]
    return []


def in_mib(size: int) -> str:
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
        if UNSET_ALIAS_VALUES.get(entry.key) == entry.value.strip():
            continue  # Odoo's "not set": nothing to warn about
        key = _canonical_key(entry.key, entry.value, where, warnings)
        if key is not None and _odoo_unset(key, entry.value):
            continue  # odoo.conf writes False or None for an option that is not set
        if key is not None:
            via = entry.key if key != entry.key else ""
            layer.append(Assignment(key, entry.value, where, f"option {entry.key!r}", via))
    return one_name_per_option(layer, warnings)


# Odoo 16-18 declare longpolling_port with the default 0, meaning "not set", and --save
# writes it so beside gevent_port.
UNSET_ALIAS_VALUES = {"longpolling_port": "0"}


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


def odoo_target(entry: OdooKey, raw: str, where: str, warnings: list[str], name: str) -> str | None:
    """The prefork option an Odoo key or flag (`name`: how messages call it) sets, per the
    Odoo table; None when it sets none."""
    if entry.status == TRUE_ONLY:
        try:
            enabled = BOOLEAN.parse(raw)
        except ValueError:
            raise ConfigError(
                f"option {name}: expected True or False, got {raw!r}", where=where
            ) from None
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
    warnings.append(
        f"{where}: unknown option {key!r} (neither prefork's nor Odoo's; an addon's?) is ignored"
    )


def _env_layer(environ: Mapping[str, str]) -> list[Assignment]:
    return [
        Assignment(
            spec.key, environ[spec.env], f"environment variable {spec.env}", f"option {spec.key!r}"
        )
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


# Not a new master per change, as USR2 starts: it would import the new code, but the master
# started from the terminal would exit and leave its successor running behind the shell.
DEV_PRELOAD_REFUSED = (
    "dev_mode = {dev} (from {dev_from}) cannot reload with preload_app (from {preload_from}): "
    "the master imports the application once, before forking, and every worker it starts "
    "runs that code, so a change would never be served; turn preload_app off while "
    "developing (it only shares memory between workers), or run workers = 0"
)


def _check_consistency(settings: Settings, origin: dict[str, str]) -> None:
    if settings.multiprocessing and settings.db_uri.startswith("sqlite:"):
        raise ConfigError(SQLITE_REFUSED)
    if settings.multiprocessing and settings.session_store == "memory":
        raise ConfigError(MEMORY_SESSIONS_REFUSED)
    if settings.multiprocessing and settings.preload_app and settings.dev_reload:
        raise ConfigError(
            DEV_PRELOAD_REFUSED.format(
                dev=settings.dev_mode,
                dev_from=origin.get("dev_mode", "default"),
                preload_from=origin.get("preload_app", "default"),
            )
        )
    soft, hard = settings.limit_memory_soft, settings.limit_memory_hard
    if hard and soft > hard:  # a hard limit of 0 is none (as in Odoo)
        raise ConfigError(
            f"option 'limit_memory_soft' ({soft} bytes, {in_mib(soft)}, from "
            f"{origin.get('limit_memory_soft', 'default')}) must not exceed "
            f"'limit_memory_hard' ({hard} bytes, {in_mib(hard)}, from "
            f"{origin.get('limit_memory_hard', 'default')})"
        )
