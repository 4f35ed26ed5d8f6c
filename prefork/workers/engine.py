"""The HTTP engine built from settings: one recipe for threaded mode and HTTP workers."""

from __future__ import annotations

from collections.abc import Callable

from prefork import metrics
from prefork.access_log import open_access_log
from prefork.addresses import UNIX_SERVER_NAME, UNIX_SERVER_PORT, http_address, realtime_address
from prefork.config import Settings
from prefork.db.pool import Database
from prefork.http.connection import SendBudget
from prefork.http.loop import Dispatch, EventLoop, Timeouts
from prefork.http.parser import Limits
from prefork.ops.adminpass import dashboard_password
from prefork.ops.dashboard import Dashboard
from prefork.ops.forwarded import recorder
from prefork.sessions.binder import SessionBinder
from prefork.sessions.stores import make_store
from prefork.wsgi.database import DatabaseMiddleware
from prefork.wsgi.environ import EnvironBuilder
from prefork.wsgi.file_wrapper import FileWrapper
from prefork.wsgi.handler import RequestHook, WSGIApp, WSGIHandler
from prefork.wsgi.health import HEALTH_PATH, HealthCheck
from prefork.wsgi.limit_exceeded import LimitAlarm
from prefork.wsgi.metrics_endpoint import PATH as METRICS_PATH
from prefork.wsgi.metrics_endpoint import MetricsEndpoint
from prefork.wsgi.realtime_elsewhere import RealtimeElsewhere
from prefork.wsgi.routes import ServerRoutes


def make_loop(
    settings: Settings, dispatch: Dispatch, *, inline: bool, pace_accepting: bool = False
) -> EventLoop:
    limits = Limits(
        settings.limit_request_line,
        settings.limit_request_fields,
        settings.limit_request_field_size,
        settings.limit_request_body,
    )
    timeouts = Timeouts(
        settings.http_header_timeout, settings.http_keepalive_timeout, settings.http_send_timeout
    )
    budget = SendBudget(settings.http_send_buffer_worker, settings.http_send_buffer)
    counters = metrics.current()
    return EventLoop(
        limits,
        timeouts,
        dispatch,
        inline=inline,
        pace_accepting=pace_accepting,
        budget=budget,
        refused=counters.refusal if counters is not None else None,
    )


def make_handler(
    settings: Settings,
    app: WSGIApp,
    loop: EventLoop,
    *,
    multiprocess: bool,
    draining: Callable[[], bool],
    drain_announced: Callable[[], bool],
    database: Database | None = None,
    alarm: LimitAlarm | None = None,
) -> WSGIHandler:
    """The WSGI handler; with a database, requests get their transaction and /web/health
    can report on it; with an alarm, a limit can stop a request (HTTP workers).
    `draining`: the server stops, keep-alive ends; `drain_announced`: a stop is coming
    (drain_delay), /web/health says so while requests are served as usual."""
    if dashboard_password(settings):
        app = Dashboard(app, settings)  # inside the database middleware: it reads the jobs
    hooks: list[RequestHook] = [SessionBinder(make_store(settings), settings)]
    if database is not None:
        app = transactions = DatabaseMiddleware(app, database)
        hooks.append(transactions.bind)
    own: dict[str, WSGIApp] = {HEALTH_PATH: HealthCheck(database, drain_announced)}
    counters = metrics.current()
    if counters is not None:
        own[METRICS_PATH] = MetricsEndpoint(settings.metrics_allow)
    http, realtime = http_address(settings), realtime_address(settings)
    elsewhere = RealtimeElsewhere(realtime, http) if multiprocess else None
    app = ServerRoutes(app, own, elsewhere)
    server_name, server_port = (
        (UNIX_SERVER_NAME, UNIX_SERVER_PORT) if http.unix else (http.host or "0.0.0.0", http.port)
    )
    environ = EnvironBuilder(
        server_name, server_port, settings.proxy_mode, recorder(settings.data_dir)
    )
    environ.configure(multithread=not multiprocess, multiprocess=multiprocess)
    environ.constant("wsgi.file_wrapper", FileWrapper)
    if multiprocess and not settings.proxy_mode and not realtime.unix:
        # Where pages should open websockets; absent in threaded mode and behind a proxy,
        # where /websocket is on the same origin.
        environ.constant("prefork.realtime_port", settings.gevent_port)
    if multiprocess:  # threaded mode applies no CPU limit per request
        environ.constant("prefork.limit_time_cpu", settings.limit_time_cpu)
    return WSGIHandler(
        app,
        environ,
        loop.date,
        send_timeout=settings.http_send_timeout,
        access_log=open_access_log(settings.access_log),
        draining=draining,
        metrics=counters,
        request_hooks=hooks,
        alarm=alarm,
    )
