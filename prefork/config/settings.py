"""The option table: every setting prefork knows, declared once.

Each field of `Settings` is one option. Its metadata is the single source of truth for the
config-file key (the field name), the command-line flags, the environment variable, the kind
(type, unit, validation) and the help text; the CLI, the loader and docs/configuration.md are
all generated from it. Later features add their options here, nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from prefork.config import kinds
from prefork.config.kinds import Kind

ENV_PREFIX = "PREFORK_"


@dataclass(frozen=True)
class OptionSpec:
    key: str
    kind: Kind[Any]
    default: Any
    flags: tuple[str, ...]
    help: str
    section: str
    aliases: tuple[str, ...] = ()
    secret: str = ""  # how `check` and messages hide it: "value", "credentials" or "url"

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()


def opt(
    kind: Kind[Any],
    default: Any,
    *flags: str,
    help: str,
    section: str,
    aliases: tuple[str, ...] = (),
    secret: str = "",
) -> Any:
    """Declare one option; the field name becomes its config-file key.

    `secret` says what of its value must never be shown (prefork.config.secrets): the whole
    "value", the password of a URL's "credentials", or everything of a "url" but its host."""
    meta = {
        "kind": kind,
        "flags": flags,
        "help": help,
        "section": section,
        "aliases": aliases,
        "secret": secret,
    }
    return field(default=default, metadata=meta)


DEFAULT_DATA_DIR = os.path.join("~", ".local", "share", "prefork")
MiB = 1 << 20
# Odoo's defaults, 2048 MiB soft for 2560 MiB hard: a soft limit 80% of the hard one, the
# rule prefork applies when only one is set and that `prefork tune` sizes with.
SOFT_PER_HARD = (4, 5)


@dataclass(frozen=True)
class Settings:
    # -- application and processes ---------------------------------------------------------
    app: str = opt(
        kinds.APP,
        "",
        "--app",
        section="Processes",
        help="WSGI application to serve, as 'module:callable'; empty serves the built-in demo.",
    )
    workers: int = opt(
        kinds.WORKERS,
        0,
        "--workers",
        section="Processes",
        help="HTTP worker processes. 0 runs the single-process threaded mode; 'auto' sizes "
        "from the CPUs and memory available.",
    )
    max_cron_threads: int = opt(
        kinds.WHOLE,
        2,
        "--max-cron-threads",
        section="Processes",
        help="Cron worker processes (threads in threaded mode).",
    )
    preload_app: bool = opt(
        kinds.BOOLEAN,
        False,
        "--preload-app",
        section="Processes",
        help="Import the application in the master before forking workers (copy-on-write "
        "memory; a reload then keeps the old code).",
    )
    http_threads: int = opt(
        kinds.POSITIVE,
        8,
        "--http-threads",
        section="Processes",
        help="Threads serving requests in threaded mode (workers = 0).",
    )
    # -- network ----------------------------------------------------------------------------
    http_interface: str = opt(
        kinds.INTERFACE,
        "",
        "--http-interface",
        section="Network",
        help="Address to listen on; empty listens on all IPv4 interfaces, an address "
        "containing ':' is IPv6, and unix:PATH listens on a Unix socket (http_port is then "
        "unused).",
    )
    http_port: int = opt(
        kinds.PORT,
        8069,
        "-p",
        "--http-port",
        section="Network",
        help="HTTP port.",
    )
    gevent_port: int = opt(
        kinds.PORT,
        8072,
        "--gevent-port",
        section="Network",
        aliases=("longpolling_port",),
        help="Port of the realtime process (websocket and long-polling). "
        "'longpolling_port' is a deprecated alias.",
    )
    gevent_interface: str = opt(
        kinds.INTERFACE,
        "",
        "--gevent-interface",
        section="Network",
        help="Address of the realtime process: empty uses http_interface (127.0.0.1 when "
        "that is a Unix socket) with gevent_port; unix:PATH listens on a Unix socket.",
    )
    unix_socket_mode: str = opt(
        kinds.FILE_MODE,
        "0660",
        "--unix-socket-mode",
        section="Network",
        help="Permissions of the Unix sockets prefork creates (the reverse proxy needs "
        "read and write).",
    )
    unix_socket_group: str = opt(
        kinds.TEXT,
        "",
        "--unix-socket-group",
        section="Network",
        help="Group (name or number) given the Unix sockets prefork creates, e.g. the "
        "reverse proxy's (www-data); empty keeps the server's own.",
    )
    reuse_port: bool = opt(
        kinds.BOOLEAN,
        False,
        "--reuse-port",
        section="Network",
        help="Set SO_REUSEPORT on the listening sockets, so another server can bind the same "
        "port during an upgrade.",
    )
    proxy_mode: bool = opt(
        kinds.BOOLEAN,
        False,
        "--proxy-mode",
        section="Network",
        help="Trust X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host from a reverse proxy.",
    )
    # -- limits -------------------------------------------------------------------------------
    limit_memory_soft: int = opt(
        kinds.SIZE,
        2048 * MiB,
        "--limit-memory-soft",
        section="Limits",
        help="Resident memory after which a worker finishes its request and is recycled.",
    )
    limit_memory_hard: int = opt(
        kinds.SIZE,
        2560 * MiB,
        "--limit-memory-hard",
        section="Limits",
        help="Resident memory at which a worker's request is stopped (503) and the worker "
        "replaced.",
    )
    limit_time_cpu: int = opt(
        kinds.LIMIT_SECONDS,
        60,
        "--limit-time-cpu",
        section="Limits",
        help="CPU seconds a request may use (0 = no limit).",
    )
    limit_time_real: int = opt(
        kinds.LIMIT_SECONDS,
        120,
        "--limit-time-real",
        section="Limits",
        help="Wall-clock seconds a request may take (0 = no limit); also bounds a graceful stop.",
    )
    limit_time_real_cron: int = opt(
        kinds.CRON_SECONDS,
        -1,
        "--limit-time-real-cron",
        section="Limits",
        help="Wall-clock seconds per cron job; -1 uses limit_time_real, 0 means no limit.",
    )
    limit_request: int = opt(
        kinds.POSITIVE,
        65536,
        "--limit-request",
        section="Limits",
        help="Requests a worker serves before it is recycled (with jitter).",
    )
    drain_delay: float = opt(
        kinds.SECONDS,
        0.0,
        "--drain-delay",
        section="Limits",
        help="Seconds a stop (TERM, INT) keeps serving while /web/health answers 503 "
        "'draining', so a load balancer that polls it moves traffic away; then the graceful "
        "stop. A second TERM ends the wait.",
    )
    # -- HTTP ---------------------------------------------------------------------------------
    limit_request_line: int = opt(
        kinds.POSITIVE,
        8190,
        "--limit-request-line",
        section="HTTP",
        help="Longest request line in bytes; longer gets 414.",
    )
    limit_request_fields: int = opt(
        kinds.POSITIVE,
        100,
        "--limit-request-fields",
        section="HTTP",
        help="Most header fields in a request; more gets 431.",
    )
    limit_request_field_size: int = opt(
        kinds.POSITIVE,
        8190,
        "--limit-request-field-size",
        section="HTTP",
        help="Longest header field line in bytes; longer gets 431.",
    )
    limit_request_body: int = opt(
        kinds.SIZE,
        64 * MiB,
        "--limit-request-body",
        section="HTTP",
        help="Largest request body; larger gets 413 before it is read.",
    )
    http_header_timeout: float = opt(
        kinds.SECONDS,
        20.0,
        "--http-header-timeout",
        section="HTTP",
        help="Seconds a client has to send a whole request (headers and body) once it "
        "has started; slower clients get 408.",
    )
    http_keepalive_timeout: float = opt(
        kinds.SECONDS,
        15.0,
        "--http-keepalive-timeout",
        section="HTTP",
        help="Seconds an idle keep-alive connection is kept open.",
    )
    http_send_timeout: float = opt(
        kinds.SECONDS,
        20.0,
        "--http-send-timeout",
        section="HTTP",
        help="Seconds a client may read nothing of its response before it is dropped.",
    )
    http_send_buffer: int = opt(
        kinds.SIZE,
        4 * MiB,
        "--http-send-buffer",
        section="HTTP",
        help="Most bytes of a response a worker keeps for a client that reads slowly while "
        "it serves other requests; a streamed body is drawn no further ahead (a body the "
        "application returns as one piece is kept whole).",
    )
    http_send_buffer_worker: int = opt(
        kinds.SIZE,
        64 * MiB,
        "--http-send-buffer-worker",
        section="HTTP",
        help="Most bytes one HTTP worker keeps for all its slow readers; past it, a "
        "response waits in its worker until its client has read it (0: always).",
    )
    # -- scheduled jobs -----------------------------------------------------------------------
    cron_jobs: str = opt(
        kinds.TEXT,
        "",
        "--cron-jobs",
        section="Scheduled jobs",
        help="Comma-separated modules whose @cron jobs to run; empty imports the application's "
        "module (its @cron declarations count).",
    )
    limit_time_cpu_cron: int = opt(
        kinds.CRON_SECONDS,
        -1,
        "--limit-time-cpu-cron",
        section="Scheduled jobs",
        help="CPU seconds per cron job; -1 uses limit_time_real_cron, 0 means no limit.",
    )
    limit_time_worker_cron: int = opt(
        kinds.LIMIT_SECONDS,
        0,
        "--limit-time-worker-cron",
        section="Scheduled jobs",
        help="Seconds a cron worker process lives before it is replaced (multi-processing "
        "mode), checked between jobs (a "
        "job running is never cut short); 0 = no limit. Odoo 18's option.",
    )
    cron_max_failures: int = opt(
        kinds.POSITIVE,
        5,
        "--cron-max-failures",
        section="Scheduled jobs",
        help="Consecutive failures after which a job is deactivated (with cron_failure_window).",
    )
    cron_failure_window: float = opt(
        kinds.SECONDS,
        7 * 86400.0,
        "--cron-failure-window",
        section="Scheduled jobs",
        help="Seconds a job must have been failing, besides cron_max_failures, before it is "
        "deactivated (Odoo: 7 days).",
    )
    cron_retry_delay: float = opt(
        kinds.SECONDS,
        30.0,
        "--cron-retry-delay",
        section="Scheduled jobs",
        help="Seconds before a failed job is retried; doubled on each further failure, at most "
        "one hour, never later than its next slot.",
    )
    cron_catch_up: bool = opt(
        kinds.BOOLEAN,
        False,
        "--cron-catch-up",
        section="Scheduled jobs",
        help="Run a job once per slot missed while no server ran (default: once in all).",
    )
    cron_poll_interval: float = opt(
        kinds.SECONDS,
        60.0,
        "--cron-poll-interval",
        section="Scheduled jobs",
        help="Longest a cron worker sleeps without looking for due jobs (NOTIFY wakes it sooner).",
    )
    # -- database -----------------------------------------------------------------------------
    db_host: str = opt(
        kinds.TEXT,
        "",
        "--db_host",
        section="Database",
        help="PostgreSQL host name or socket directory. With every db_* option empty, "
        "prefork starts an embedded PostgreSQL in data_dir/postgres.",
    )
    db_port: int = opt(
        kinds.PORT,
        0,
        "--db_port",
        section="Database",
        help="PostgreSQL port; 0 uses libpq's default (5432).",
    )
    db_user: str = opt(
        kinds.TEXT,
        "",
        "-r",
        "--db_user",
        section="Database",
        help="PostgreSQL user.",
    )
    db_password: str = opt(
        kinds.TEXT,
        "",
        "-w",
        "--db_password",
        section="Database",
        help="PostgreSQL password.",
        secret="value",
    )
    db_name: str = opt(
        kinds.TEXT,
        "",
        "-d",
        "--database",
        section="Database",
        help="PostgreSQL database; empty uses libpq's default (the user's name).",
    )
    db_sslmode: str = opt(
        kinds.SSLMODE,
        "prefer",
        "--db_sslmode",
        section="Database",
        help="libpq sslmode: disable, allow, prefer, require, verify-ca or verify-full.",
    )
    db_uri: str = opt(
        kinds.DB_URI,
        "",
        "--db-uri",
        section="Database",
        secret="credentials",
        help="postgresql://... connection URI (overrides the other db_* options), or "
        "sqlite:///path (threaded mode only).",
    )
    db_maxconn: int = opt(
        kinds.POSITIVE,
        64,
        "--db_maxconn",
        section="Database",
        help="Most database connections one process opens.",
    )
    db_maxconn_gevent: int = opt(
        kinds.WHOLE,
        0,
        "--db_maxconn_gevent",
        section="Database",
        help="Most database connections the realtime process opens for clients catching up "
        "(besides the bus's own two); 0 means 4. Reconnecting clients queue for them, so a "
        "burst of reconnections does not take the database's connections.",
    )
    db_connect_timeout: float = opt(
        kinds.SECONDS,
        30.0,
        "--db-connect-timeout",
        section="Database",
        help="Seconds the server waits at start for the database to accept connections "
        "before it gives up with an error.",
    )
    db_pool_timeout: float = opt(
        kinds.SECONDS,
        5.0,
        "--db-pool-timeout",
        section="Database",
        help="Seconds a request waits for a database connection; then it gets 503.",
    )
    # -- realtime -----------------------------------------------------------------------------
    limit_memory_soft_gevent: int = opt(
        kinds.SIZE,
        0,
        "--limit-memory-soft-gevent",
        section="Realtime",
        help="Resident memory after which the realtime process is replaced gracefully "
        "(its clients reconnect and catch up); 0 uses limit_memory_soft.",
    )
    limit_memory_hard_gevent: int = opt(
        kinds.SIZE,
        0,
        "--limit-memory-hard-gevent",
        section="Realtime",
        help="Resident memory at which the realtime process is killed; 0 uses limit_memory_hard.",
    )
    bus_retention: int = opt(
        kinds.LIMIT_SECONDS,
        3600,
        "--bus-retention",
        section="Realtime",
        help="Seconds bus messages are kept for clients catching up (0 = forever).",
    )
    websocket_lifetime: int = opt(
        kinds.LIMIT_SECONDS,
        3600,
        "--websocket-lifetime",
        section="Realtime",
        help="Seconds after which a websocket is closed (code 4002, +/-10% jitter) so that "
        "clients reconnect and spread over processes (0 = never).",
    )
    websocket_ping_interval: float = opt(
        kinds.SECONDS,
        45.0,
        "--websocket-ping-interval",
        section="Realtime",
        help="Seconds between two pings the realtime process sends each websocket client.",
    )
    websocket_ping_timeout: float = opt(
        kinds.SECONDS,
        15.0,
        "--websocket-ping-timeout",
        section="Realtime",
        help="Seconds a websocket client has to answer a ping before it is dropped (1011).",
    )
    websocket_rate_limit_burst: int = opt(
        kinds.POSITIVE,
        10,
        "--websocket-rate-limit-burst",
        section="Realtime",
        help="Messages a websocket client may send at once: a message that comes less "
        "than burst x delay seconds after the burst-th message before it closes the "
        "connection with 1013 (Odoo's rate limit and default).",
    )
    websocket_rate_limit_delay: float = opt(
        kinds.SECONDS,
        0.2,
        "--websocket-rate-limit-delay",
        section="Realtime",
        help="Seconds per message a websocket client may sustain after a burst (see "
        "websocket_rate_limit_burst; Odoo's default).",
    )
    websocket_queue_limit: int = opt(
        kinds.SIZE,
        4 * MiB,
        "--websocket-queue-limit",
        section="Realtime",
        help="Memory the messages waiting for one websocket client may take (a client that "
        "does not read); past it the client is closed with 1013 and reconnects from its "
        "last message id. 0 = no limit.",
    )
    websocket_worker_version: str = opt(
        kinds.TEXT,
        "",
        "--websocket-worker-version",
        section="Realtime",
        help="The current version of Odoo 17+ websocket workers (the ?version= they send); "
        "a browser whose worker sends another one is closed with 1000 OUTDATED_VERSION, so "
        "it stops instead of reconnecting. Empty accepts every version (Odoo 16 workers "
        "send none).",
    )
    bus_auth: str = opt(
        kinds.HOOK,
        "",
        "--bus-auth",
        section="Realtime",
        help="'module:callable' given (cookies, headers), returning the client's identity or "
        "None when it has no valid session; a client without one is served as an "
        "anonymous client, and one that had a session when it connected is closed with "
        "4001 when None comes back later. Empty checks the session cookie against the "
        "session store.",
    )
    bus_channels: str = opt(
        kinds.HOOK,
        "",
        "--bus-channels",
        section="Realtime",
        help="'module:callable' given (identity, channels), returning the channels that "
        "identity may subscribe to (it may add its own). Record channels (lists such as "
        '["db", "res.partner", 7]) are never given to anonymous clients, and to others '
        "only when this returns them; empty gives clients the string channels they ask "
        "for and no record channel. Every client also gets 'broadcast'.",
    )
    # -- sessions ----------------------------------------------------------------------------
    session_store: str = opt(
        kinds.SESSION_STORE,
        "file",
        "--session-store",
        section="Sessions",
        secret="credentials",
        help="Where sessions live: 'file' (data_dir/sessions, shared by the workers of a "
        "host), a Redis URL such as redis://127.0.0.1:6379/0 (shared by hosts), or 'memory' "
        "(threaded mode only).",
    )
    session_secret: str = opt(
        kinds.TEXT,
        "",
        "--session-secret",
        section="Sessions",
        secret="value",
        help="Key that signs session cookies; empty uses a random key kept in "
        "data_dir/session.secret. Hosts sharing sessions need the same key.",
    )
    session_cookie_name: str = opt(
        kinds.TEXT,
        "session_id",
        "--session-cookie-name",
        section="Sessions",
        help="Name of the session cookie.",
    )
    session_cookie_path: str = opt(
        kinds.TEXT,
        "/",
        "--session-cookie-path",
        section="Sessions",
        help="Path of the session cookie.",
    )
    session_idle_timeout: int = opt(
        kinds.LIMIT_SECONDS,
        7 * 86400,
        "--session-idle-timeout",
        section="Sessions",
        help="Seconds without a request after which a session expires (0 = never).",
    )
    session_max_lifetime: int = opt(
        kinds.LIMIT_SECONDS,
        30 * 86400,
        "--session-max-lifetime",
        section="Sessions",
        help="Seconds after its creation a session expires whatever its use (0 = never); "
        "also the cookie's Max-Age.",
    )
    dashboard_password: str = opt(
        kinds.TEXT,
        "",
        "--dashboard-password",
        section="Operations",
        secret="value",
        help="Password of the dashboard at /prefork/ (HTTP Basic, any user name; plain text "
        "or Odoo's $pbkdf2-sha512$ hash); empty falls back to admin_passwd.",
    )
    admin_passwd: str = opt(
        kinds.TEXT,
        "",
        "--admin-passwd",
        section="Operations",
        secret="value",
        help="Odoo's master password, the dashboard's when dashboard_password is empty; "
        "Odoo's default 'admin' (plain or hashed) never opens it. Both empty: no dashboard.",
    )
    # -- health monitor ----------------------------------------------------------------------
    alert_window: int = opt(
        kinds.POSITIVE,
        300,
        "--alert-window",
        section="Operations",
        help="Seconds over which the master counts worker exits for its alerts.",
    )
    alert_crashes: int = opt(
        kinds.WHOLE,
        3,
        "--alert-crashes",
        section="Operations",
        help="Crashes (and failed boots) within alert_window that raise a crash-loop alert "
        "(0 = never).",
    )
    alert_limit_kills: int = opt(
        kinds.WHOLE,
        5,
        "--alert-limit-kills",
        section="Operations",
        help="Workers killed by a hard limit (memory, CPU, real time) within alert_window "
        "that raise an alert (0 = never).",
    )
    alert_webhook: str = opt(
        kinds.TEXT,
        "",
        "--alert-webhook",
        section="Operations",
        secret="url",
        help="URL alerts are POSTed to as JSON when raised and when cleared; empty: none.",
    )
    # -- metrics -----------------------------------------------------------------------------
    metrics_allow: str = opt(
        kinds.NETWORKS,
        "127.0.0.0/8,::1",
        "--metrics-allow",
        section="Operations",
        help="Addresses or networks that may read /metrics (Prometheus text format, every "
        "process summed); empty turns metrics off (nothing is counted).",
    )
    # -- files and logging --------------------------------------------------------------------
    data_dir: str = opt(
        kinds.TEXT,
        DEFAULT_DATA_DIR,
        "-D",
        "--data-dir",
        section="Files and logging",
        help="Directory for sessions, the embedded database and runtime files.",
    )
    pidfile: str = opt(
        kinds.TEXT,
        "",
        "--pidfile",
        section="Files and logging",
        help="File the master writes its pid to; empty writes none.",
    )
    logfile: str = opt(
        kinds.TEXT,
        "",
        "--logfile",
        section="Files and logging",
        help="Log file; empty logs to standard error.",
    )
    log_level: str = opt(
        kinds.LOG_LEVEL,
        "info",
        "--log-level",
        section="Files and logging",
        help="Lowest level logged: debug, info, warning, error or critical; Odoo's "
        "debug_rpc_answer, debug_rpc and debug_sql log as debug, runbot as 25 (between info "
        "and warning), test and notset as info, warn as warning.",
    )
    access_log: bool = opt(
        kinds.BOOLEAN,
        True,
        "--access-log",
        section="Files and logging",
        help="Log one line per request (remote address, request line, status, bytes, "
        "duration), in the log's format; buffered, written within a second.",
    )
    # -- development -------------------------------------------------------------------------
    dev_mode: str = opt(
        kinds.DEV_MODE,
        "",
        "--dev",
        section="Development",
        help="Odoo's developer features, comma-separated (--dev reload, --dev all). 'reload' "
        "(or 'all') replaces the workers, or re-executes the threaded server, when a Python "
        "file of the application changes and compiles; for development only, never in "
        "production. Odoo's other values (qweb, xml, werkzeug, access, replica, pdb, ipdb, "
        "pudb, wdb) are accepted and do nothing in prefork.",
    )

    @property
    def multiprocessing(self) -> bool:
        return self.workers != 0

    @property
    def dev_reload(self) -> bool:
        """Reload on code change: Odoo's --dev reload, which --dev all includes."""
        features = self.dev_mode.split(",")
        return "reload" in features or "all" in features


def option_specs() -> list[OptionSpec]:
    """The option table, in declaration order."""
    return [
        OptionSpec(
            key=f.name,
            kind=f.metadata["kind"],
            default=f.default,
            flags=f.metadata["flags"],
            help=f.metadata["help"],
            section=f.metadata["section"],
            aliases=f.metadata["aliases"],
            secret=f.metadata["secret"],
        )
        for f in dataclasses.fields(Settings)
    ]


SPECS: dict[str, OptionSpec] = {spec.key: spec for spec in option_specs()}
ALIASES: dict[str, str] = {alias: s.key for s in SPECS.values() for alias in s.aliases}
