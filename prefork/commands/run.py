"""`prefork run`: start the server in the mode the configuration asks for."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prefork.cli import parse
from prefork.config.loader import Loaded
from prefork.logs import setup_logging
from prefork.pidfile import pidfile
from prefork.servers.master import Master
from prefork.servers.threaded import ThreadedServer
from prefork.wsgi.loader import AppImportError, load_app

log = logging.getLogger("prefork")

AUTO_UNAVAILABLE = "workers = auto is not available in this version; set a number of workers"


def run(loaded: Loaded, argv: Sequence[str]) -> int:
    settings = loaded.settings
    setup_logging(settings.log_level, settings.logfile)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    if settings.workers < 0:
        log.error(AUTO_UNAVAILABLE)
        return 2
    app = None
    if not settings.multiprocessing or settings.preload_app:
        try:
            app = load_app(settings.app)
        except AppImportError as exc:
            log.error("%s", exc)
            return 2
        except Exception:
            log.exception("cannot import the application %r", settings.app)
            return 1
    try:
        if settings.multiprocessing:
            return Master(loaded, argv, app, reload=lambda: parse(argv)[1]).run()
        assert app is not None
        with pidfile(settings.pidfile):
            return ThreadedServer(settings, app, argv).serve()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.http_interface or "0.0.0.0",
                  settings.http_port, exc.strerror)
        return 1
