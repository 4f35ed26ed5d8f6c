"""`prefork run`: start the server in the mode the configuration asks for."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from prefork import compiled, datadir, metrics
from prefork.commands.load import parse
from prefork.commands.preflight import import_problems
from prefork.config import Settings
from prefork.config.loader import Loaded
from prefork.cron.threads import CronImportError
from prefork.db.startup import DatabaseRuntime, DatabaseStartError, start_database
from prefork.db.target import EMBEDDED, resolve_target
from prefork.dev.reload import inert_note
from prefork.logs import LogfileError, setup_logging
from prefork.pidfile import PidfileError, pidfile
from prefork.servers.master import Master
from prefork.servers.threaded import ThreadedServer, wait_for_fix
from prefork.sockets import ListenError
from prefork.usercode import UserImportError
from prefork.wsgi.handler import WSGIApp
from prefork.wsgi.loader import DEMO_APP, load_app

log = logging.getLogger("prefork")


def run(loaded: Loaded, argv: Sequence[str], *, stop_after_init: bool = False) -> int:
    settings = loaded.settings
    try:
        setup_logging(settings.log_level, settings.logfile)
    except LogfileError as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return 2
    for warning in loaded.warnings:
        log.warning("%s", warning)
    for note in [*loaded.notes, *inert_note(settings)]:
        log.info("%s", note)
    _report_build()
    try:
        for warning in _prepare_data_dir(settings):
            log.warning("%s", warning)
    except OSError as exc:
        log.error(
            "cannot create data_dir %s: %s; set data_dir (-D) to a directory the "
            "server's user may write",
            settings.data_dir,
            exc.strerror or exc,
        )
        return 2
    if stop_after_init:
        return initialise(settings)
    metrics.setup(settings)  # before any fork: every process writes under one directory
    if settings.dev_reload:
        # No bytecode cached by the server's own imports: a quick edit keeping the file's
        # size would look unchanged to it (see prefork.dev.reload.forget_bytecode).
        sys.dont_write_bytecode = True
    try:
        return _serve(loaded, argv)
    finally:
        metrics.tear_down()


def initialise(settings: Settings) -> int:
    """--stop-after-init: everything a start does before it serves, then exit 0 (or 2 and
    the reason): the database reached (or the embedded one started) and prefork's schema
    migrated, the application, the jobs and the hooks imported, the pidfile written."""
    try:
        database = start_database(settings)
    except DatabaseStartError as exc:
        log.error("%s", exc)
        return 2
    try:
        problems = import_problems(settings)
        if not problems:
            with pidfile(settings.pidfile):
                pass
    except PidfileError as exc:
        problems = [str(exc)]
    finally:
        database.close()
    for problem in problems:
        log.error("%s", problem)
    if problems:
        return 2
    jobs = (settings.cron_jobs or "the app's module") if settings.max_cron_threads else "none"
    log.info(
        "initialised (database ready, application %s and jobs (%s) imported); exiting "
        "as --stop-after-init asks",
        settings.app or DEMO_APP,
        jobs,
    )
    return 0


def _serve(loaded: Loaded, argv: Sequence[str]) -> int:
    settings = loaded.settings
    try:
        database = start_database(settings, as_server=True)
    except DatabaseStartError as exc:
        log.error("%s", exc)
        return 2
    handed_over = False
    try:
        app = _load_app(settings)
        if settings.multiprocessing:
            master = Master(loaded, argv, app, reload=lambda: parse(argv)[1], database=database)
            code = master.run()
            handed_over = master.handed_over
            return code
        assert app is not None
        with pidfile(settings.pidfile):
            return _serve_threaded(settings, argv, app, database)
    except ListenError as exc:
        log.error("%s", exc)
        return 1
    except (CronImportError, UserImportError, PidfileError) as exc:
        log.error("%s", exc)
        return 2
    except _ImportFailed:
        if settings.dev_reload and not settings.multiprocessing:
            return wait_for_fix(settings, argv)
        return 1
    except OSError as exc:  # a file or directory the configuration names (data_dir, ...)
        log.error("cannot start: %s", exc)
        return 1
    finally:
        if not handed_over:
            database.leave_cluster()
        database.close(keep_embedded=handed_over)


def _serve_threaded(
    settings: Settings, argv: Sequence[str], app: WSGIApp, database: DatabaseRuntime
) -> int:
    pool = database.database(settings)
    try:
        postgres = database.target.conninfo if database.target.is_postgres else ""
        if not postgres:
            log.warning(
                "scheduled jobs and the realtime bus need PostgreSQL: with "
                "SQLite no cron thread runs and /websocket is not served"
            )
        return ThreadedServer(settings, app, argv, pool, postgres).serve()
    finally:
        pool.close()


class _ImportFailed(Exception):
    """The application raised while it was imported (logged with its traceback)."""


def _load_app(settings: Settings) -> WSGIApp | None:
    """The application when this process must import it (threaded mode, preload_app); None
    when the workers will."""
    if settings.multiprocessing and not settings.preload_app:
        return None
    try:
        return load_app(settings.app)
    except UserImportError:
        raise
    except Exception:
        log.exception("cannot import the application %r", settings.app)
        raise _ImportFailed from None


def _prepare_data_dir(settings: Settings) -> list[str]:
    # As root the embedded PostgreSQL runs as its own user, who must pass through data_dir.
    embedded_as_root = os.geteuid() == 0 and resolve_target(settings).kind == EMBEDDED
    return datadir.prepare(settings.data_dir, searchable=embedded_as_root)


def _report_build() -> None:
    log.info("request path: %s", compiled.build())
    for source in compiled.stale_modules():
        log.warning(
            "%s changed after it was compiled: the compiled module runs, without "
            "the change, until prefork is installed again (pip install -e .)",
            source,
        )
