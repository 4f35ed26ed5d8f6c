"""`prefork run`: start the server in the mode the configuration asks for."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prefork import compiled, metrics
from prefork.cli import parse
from prefork.config import Settings
from prefork.config.loader import Loaded
from prefork.cron.threads import CronImportError
from prefork.db.startup import DatabaseStartError, start_database
from prefork.logs import setup_logging
from prefork.pidfile import pidfile
from prefork.servers.master import Master
from prefork.servers.threaded import ThreadedServer
from prefork.wsgi.handler import WSGIApp
from prefork.wsgi.loader import AppImportError, load_app

log = logging.getLogger("prefork")

def run(loaded: Loaded, argv: Sequence[str]) -> int:
    settings = loaded.settings
    setup_logging(settings.log_level, settings.logfile)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    for note in loaded.notes:
        log.info("%s", note)
    _report_build()
    metrics.setup(settings)  # before any fork: every process writes under one directory
    try:
        database = start_database(settings)
    except DatabaseStartError as exc:
        log.error("%s", exc)
        return 2
    handed_over = False
    try:
        app, failed = _load_app(settings)
        if failed:
            return failed
        if settings.multiprocessing:
            master = Master(loaded, argv, app, reload=lambda: parse(argv)[1],
                            database=database)
            code = master.run()
            handed_over = master.handed_over
            return code
        assert app is not None
        with pidfile(settings.pidfile):
            pool = database.database(settings)
            try:
                postgres = database.target.conninfo if database.target.is_postgres else ""
                if not postgres:
                    log.warning("scheduled jobs and the realtime bus need PostgreSQL: with "
                                "SQLite no cron thread runs and /websocket is not served")
                return ThreadedServer(settings, app, argv, pool, postgres).serve()
            finally:
                pool.close()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.http_interface or "0.0.0.0",
                  settings.http_port, exc.strerror)
        return 1
    except CronImportError as exc:
        log.error("%s", exc)
        return 2
    finally:
        database.close(keep_embedded=handed_over)
        metrics.tear_down()


def _load_app(settings: Settings) -> tuple[WSGIApp | None, int]:
    """(application, 0) when this process must import it (threaded mode, preload_app);
    (None, 0) when the workers will; (None, exit status) when it cannot be imported."""
    if settings.multiprocessing and not settings.preload_app:
        return None, 0
    try:
        return load_app(settings.app), 0
    except AppImportError as exc:
        log.error("%s", exc)
        return None, 2
    except Exception:
        log.exception("cannot import the application %r", settings.app)
        return None, 1


def _report_build() -> None:
    log.info("request path: %s", compiled.build())
    for source in compiled.stale_modules():
        log.warning("%s changed after it was compiled: the compiled module runs, without "
                    "the change, until prefork is installed again (pip install -e .)", source)
