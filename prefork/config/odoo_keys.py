"""What prefork does with each key of Odoo's `[options]` and each odoo-bin flag (Odoo 15-19).

One table, read by the loader (file keys), the CLI (odoo-bin flags) and docs/odoo.md (generated
by `python -m prefork.config.odoo_reference`). A key is:

- IMPLEMENTED: prefork has the option of the same name (it is in the option table);
- MAPPED: prefork has the same feature under another option (`target`);
- TRUE_ONLY: prefork does what the key's True means; False is refused (see `note`);
- IGNORED: loaded with one warning; `note` says why.

A key that is neither here nor in the option table is an addon's (or a typo, when it is close
to a prefork option): see loader._unknown_key.
"""

from __future__ import annotations

from dataclasses import dataclass

IMPLEMENTED = "implemented"
MAPPED = "mapped"
TRUE_ONLY = "true only"
IGNORED = "ignored"

VALUE = "value"  # --flag VALUE
NONE = "none"  # --flag
OPTIONAL = "optional"  # --flag [VALUE] (Odoo 19's --without-demo)
REPEAT = "repeat"  # --flag VALUE, repeatable


@dataclass(frozen=True)
class OdooFlag:
    names: tuple[str, ...]
    arg: str = VALUE
    value: str = ""  # what a NONE flag sets (--no-http: "False"); "" for an ignored one


@dataclass(frozen=True)
class OdooKey:
    key: str
    status: str
    target: str  # the prefork option (== key when IMPLEMENTED, "" when IGNORED)
    note: str
    flags: tuple[OdooFlag, ...] = ()


def _flags(spec: str) -> tuple[OdooFlag, ...]:
    """'-i --init | --log-web! | --without-demo?' -> flags; ! takes no value, ? an optional
    one, * is repeatable."""
    flags = []
    for group in spec.split("|"):
        names = group.split()
        if not names:
            continue
        suffix = names[-1][-1]
        arg = {"!": NONE, "?": OPTIONAL, "*": REPEAT}.get(suffix, VALUE)
        if arg != VALUE:
            names[-1] = names[-1][:-1]
        flags.append(OdooFlag(tuple(names), arg))
    return tuple(flags)


def same(key: str, flags: str = "", note: str = "") -> OdooKey:
    return OdooKey(key, IMPLEMENTED, key, note, _flags(flags))


def mapped(key: str, target: str, note: str, flags: str = "") -> OdooKey:
    return OdooKey(key, MAPPED, target, note, _flags(flags))


def ignored(key: str, note: str, flags: str = "") -> OdooKey:
    return OdooKey(key, IGNORED, "", note, _flags(flags))


_NO_HTTP = (
    "prefork always runs its HTTP service: Odoo's False (no HTTP workers nor gevent "
    "worker, cron only) is refused rather than silently serving"
)
_ODOO_MODULES = "Odoo's module loading; prefork serves one WSGI application (app)"
_ODOO_TESTS = "Odoo's test runner"
_ODOO_I18N = "Odoo's translation tools"
_ODOO_MAIL = "Odoo's outgoing mail server"
_ODOO_ORM = "an Odoo ORM setting"
_ODOO_WEB = "Odoo's web client and database manager"
_ODOO_LOGS = "Odoo's logging; prefork logs with log_level and logfile"
_ODOO_OLD = "an option of Odoo 11 or older, no longer read by Odoo"

ODOO_KEYS: tuple[OdooKey, ...] = (
    # -- processes and limits
    same("workers", "--workers"),
    same("max_cron_threads", "--max-cron-threads"),
    same(
        "limit_memory_soft",
        "--limit-memory-soft",
        "Odoo measures virtual memory (VMS), prefork resident memory (RSS)",
    ),
    same(
        "limit_memory_hard",
        "--limit-memory-hard",
        "Odoo measures virtual memory (VMS, and RLIMIT_AS), prefork resident memory (RSS)",
    ),
    same("limit_memory_soft_gevent", "--limit-memory-soft-gevent"),
    same("limit_memory_hard_gevent", "--limit-memory-hard-gevent"),
    same("limit_time_cpu", "--limit-time-cpu"),
    same("limit_time_real", "--limit-time-real"),
    same("limit_time_real_cron", "--limit-time-real-cron"),
    same(
        "limit_time_worker_cron",
        "--limit-time-worker-cron",
        "Odoo 18+: a cron worker's lifetime, after which it is recycled between jobs",
    ),
    same("limit_request", "--limit-request"),
    # -- network
    same("http_interface", "--http-interface"),
    same("http_port", "-p --http-port"),
    same("gevent_port", "--gevent-port"),
    mapped(
        "longpolling_port",
        "gevent_port",
        "Odoo 15's name (deprecated alias from Odoo 16)",
        "--longpolling-port",
    ),
    mapped(
        "xmlrpc_port",
        "http_port",
        "Odoo <= 10's name, read by Odoo 15-18; http_port wins when both are set",
        "--xmlrpc-port",
    ),
    mapped(
        "xmlrpc_interface",
        "http_interface",
        "Odoo <= 10's name, read by Odoo 15-18; http_interface wins when both are set",
        "--xmlrpc-interface",
    ),
    OdooKey("http_enable", TRUE_ONLY, "", _NO_HTTP, (OdooFlag(("--no-http",), NONE, "False"),)),
    OdooKey(
        "xmlrpc",
        TRUE_ONLY,
        "",
        "Odoo <= 10's name of http_enable; " + _NO_HTTP,
        (OdooFlag(("--no-xmlrpc",), NONE, "False"),),
    ),
    same("proxy_mode", "--proxy-mode!"),
    ignored(
        "x_sendfile",
        "prefork serves files through the application (no X-Accel-Redirect)",
        "--x-sendfile!",
    ),
    # -- realtime
    mapped(
        "websocket_keep_alive_timeout",
        "websocket_lifetime",
        "Odoo 17+: seconds after which a websocket is closed (4002, +/-10%); same meaning",
    ),
    same("websocket_rate_limit_burst", note="Odoo 17+'s websocket rate limiter"),
    same("websocket_rate_limit_delay", note="Odoo 17+'s websocket rate limiter"),
    # -- database
    same("db_name", "-d --database"),
    same("db_user", "-r --db_user"),
    same("db_password", "-w --db_password"),
    same("db_host", "--db_host"),
    same("db_port", "--db_port"),
    same("db_sslmode", "--db_sslmode"),
    same("db_maxconn", "--db_maxconn"),
    same("db_maxconn_gevent", "--db_maxconn_gevent"),
    ignored(
        "db_replica_host",
        "Odoo 18+'s read-only replica; prefork uses one database",
        "--db_replica_host",
    ),
    ignored(
        "db_replica_port",
        "Odoo 18+'s read-only replica; prefork uses one database",
        "--db_replica_port",
    ),
    ignored(
        "db_app_name",
        "Odoo 19's application_name; prefork's connections keep libpq's",
        "--db_app_name",
    ),
    ignored("db_template", "Odoo's database creation", "--db-template"),
    ignored("pg_path", "Odoo's pg_dump/pg_restore for backups", "--pg_path"),
    ignored("dbfilter", _ODOO_WEB, "--db-filter"),
    ignored("list_db", _ODOO_WEB, "--no-database-list!"),
    # -- files and logging
    same("data_dir", "-D --data-dir"),
    same("pidfile", "--pidfile"),
    same("logfile", "--logfile"),
    same(
        "log_level",
        "--log-level",
        "Odoo's levels too: debug_rpc_answer, debug_rpc, debug_sql -> debug; runbot -> 25; "
        "test, notset -> info (Odoo maps them to no logger level); warn -> warning",
    ),
    ignored(
        "log_handler",
        _ODOO_LOGS,
        "--log-handler* | --log-web! | --log-sql! | --log-request! | --log-response!",
    ),
    ignored("log_db", _ODOO_LOGS, "--log-db"),
    ignored("log_db_level", _ODOO_LOGS, "--log-db-level"),
    ignored("syslog", _ODOO_LOGS, "--syslog!"),
    ignored("logrotate", _ODOO_OLD, "--logrotate!"),
    ignored("archive_dir", "Odoo 19's archived attachments", "--archive-dir"),
    ignored("screencasts", _ODOO_TESTS, "--screencasts"),
    ignored("screenshots", _ODOO_TESTS, "--screenshots"),
    # -- development
    same(
        "dev_mode",
        "--dev",
        "prefork acts on reload (and all, which includes it): a code "
        "change replaces the workers; Odoo's other features are accepted and do nothing",
    ),
    # -- operations
    same(
        "admin_passwd",
        note="Odoo: the database manager's master password; prefork: the "
        "dashboard's when dashboard_password is empty, never Odoo's default 'admin'",
    ),
    # -- Odoo's modules and ORM
    ignored("addons_path", _ODOO_MODULES, "--addons-path"),
    ignored("upgrade_path", _ODOO_MODULES, "--upgrade-path"),
    ignored("pre_upgrade_scripts", _ODOO_MODULES, "--pre-upgrade-scripts"),
    ignored("server_wide_modules", _ODOO_MODULES, "--load"),
    ignored("init", _ODOO_MODULES, "-i --init"),
    ignored("update", _ODOO_MODULES, "-u --update"),
    ignored("reinit", _ODOO_MODULES, "--reinit"),
    ignored("without_demo", _ODOO_MODULES, "--without-demo?"),
    ignored("with_demo", _ODOO_MODULES, "--with-demo!"),
    ignored("demo", _ODOO_MODULES),
    ignored("skip_auto_install", _ODOO_MODULES, "--skip-auto-install!"),
    ignored("default_productivity_apps", _ODOO_MODULES),
    ignored("import_partial", _ODOO_ORM, "-P --import-partial"),
    ignored("csv_internal_sep", _ODOO_ORM),
    ignored("import_file_maxbytes", _ODOO_ORM),
    ignored("import_file_timeout", _ODOO_ORM),
    ignored("import_url_regex", _ODOO_ORM),
    ignored("import_image_maxbytes", _ODOO_ORM),
    ignored("import_image_regex", _ODOO_ORM),
    ignored("import_image_timeout", _ODOO_ORM),
    ignored("osv_memory_count_limit", _ODOO_ORM, "--osv-memory-count-limit"),
    ignored("osv_memory_age_limit", _ODOO_ORM, "--osv-memory-age-limit"),
    ignored("transient_age_limit", _ODOO_ORM, "--transient-age-limit"),
    ignored("unaccent", _ODOO_ORM, "--unaccent!"),
    ignored("reportgz", _ODOO_ORM),
    ignored("proxy_access_token", "Odoo 19's IAP proxy"),
    ignored("publisher_warranty_url", "Odoo's subscription check"),
    ignored("geoip_database", "Odoo's GeoIP lookups", "--geoip-db"),
    ignored("geoip_city_db", "Odoo's GeoIP lookups", "--geoip-city-db"),
    ignored("geoip_country_db", "Odoo's GeoIP lookups", "--geoip-country-db"),
    ignored("bin_path", "Odoo's external tools (wkhtmltopdf)"),
    ignored("root_path", "where Odoo's sources are"),
    ignored("shell_interface", "odoo-bin shell", "--shell-interface"),
    ignored("stop_after_init", "use `prefork run --stop-after-init`", "--stop-after-init!"),
    ignored("save", "odoo-bin --save writes the configuration file", "-s --save!"),
    # -- mail
    ignored("email_from", _ODOO_MAIL, "--email-from"),
    ignored("from_filter", _ODOO_MAIL, "--from-filter"),
    ignored("smtp_server", _ODOO_MAIL, "--smtp"),
    ignored("smtp_port", _ODOO_MAIL, "--smtp-port"),
    ignored("smtp_ssl", _ODOO_MAIL, "--smtp-ssl!"),
    ignored("smtp_user", _ODOO_MAIL, "--smtp-user"),
    ignored("smtp_password", _ODOO_MAIL, "--smtp-password"),
    ignored("smtp_ssl_certificate_filename", _ODOO_MAIL, "--smtp-ssl-certificate-filename"),
    ignored("smtp_ssl_private_key_filename", _ODOO_MAIL, "--smtp-ssl-private-key-filename"),
    # -- tests and translations
    ignored("test_enable", _ODOO_TESTS, "--test-enable!"),
    ignored("test_file", _ODOO_TESTS, "--test-file"),
    ignored("test_tags", _ODOO_TESTS, "--test-tags"),
    ignored("test_commit", _ODOO_TESTS, "--test-commit!"),
    ignored("test_report_directory", _ODOO_TESTS, "--test-report-directory"),
    ignored("load_language", _ODOO_I18N, "--load-language"),
    ignored("language", _ODOO_I18N, "-l --language"),
    ignored("translate_out", _ODOO_I18N, "--i18n-export"),
    ignored("translate_in", _ODOO_I18N, "--i18n-import"),
    ignored("overwrite_existing_translations", _ODOO_I18N, "--i18n-overwrite!"),
    ignored("translate_modules", _ODOO_I18N, "--modules"),
    # -- Odoo 11 and older, still found in old files
    ignored("xmlrpcs", _ODOO_OLD),
    ignored("xmlrpcs_interface", _ODOO_OLD),
    ignored("xmlrpcs_port", _ODOO_OLD),
    ignored("netrpc", _ODOO_OLD),
    ignored("netrpc_interface", _ODOO_OLD),
    ignored("netrpc_port", _ODOO_OLD),
)

ODOO: dict[str, OdooKey] = {entry.key: entry for entry in ODOO_KEYS}
