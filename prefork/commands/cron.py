"""`prefork cron list | run NAME [--foreground] | enable NAME | disable NAME`."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import Any

from prefork.commands.dbcli import CommandError, command_database
from prefork.config.loader import Loaded
from prefork.cron import store
from prefork.cron.runner import CronRunner, cron_limits, load_jobs
from prefork.db import roles
from prefork.db.startup import DatabaseRuntime
from prefork.logs import setup_logging
from prefork.workers.limits import RequestLimits

EXIT_FAILED = 1
EXIT_USAGE = 2


def cron(loaded: Loaded, action: str, name: str | None, foreground: bool) -> int:
    settings = loaded.settings
    setup_logging("warning", "")
    if action != "list" and not name:
        print(f"prefork: error: cron {action} needs a job name", file=sys.stderr)
        return EXIT_USAGE
    try:
        with (
            command_database(settings, "scheduled jobs") as runtime,
            roles.connect(runtime.target.conninfo, roles.CLI, autocommit=True) as conn,
        ):
            if action == "list":
                return _list(conn)
            assert name is not None
            if action == "run":
                return _run(conn, runtime, loaded, name, foreground)
            found = store.set_active(conn, name, action == "enable")
            print(f"{name}: {action}d" if found else f"no job named {name!r}")
            return 0 if found else EXIT_FAILED
    except CommandError as exc:
        print(f"prefork: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _list(conn: Any) -> int:
    jobs = store.list_jobs(conn)
    if not jobs:
        print("no scheduled jobs (they are registered when a cron worker starts)")
        return 0
    print(
        f"{'name':<34} {'schedule':<14} {'next run':<19} {'last run':<19} "
        f"{'status':<8} {'secs':>7} {'fails':>5}  active"
    )
    for job in jobs:
        active = (
            "yes"
            if job["active"] and job["declared"]
            else ("no" if job["declared"] else "no (not declared)")
        )
        duration = f"{job['last_duration']:.2f}" if job["last_duration"] is not None else "-"
        print(
            f"{job['name']:<34} {job['schedule']:<14} {_when(job['next_run']):<19} "
            f"{_when(job['last_run']):<19} {job['last_status'] or '-':<8} {duration:>7} "
            f"{job['failures']:>5}  {active}"
        )
    return 0


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _run(conn: Any, runtime: DatabaseRuntime, loaded: Loaded, name: str, foreground: bool) -> int:
    if not foreground:
        found = store.trigger(conn, name)
        print(
            f"{name}: triggered; a cron worker runs it now" if found else f"no job named {name!r}"
        )
        return 0 if found else EXIT_FAILED
    try:
        jobs = load_jobs(loaded.settings)
    except Exception as exc:
        print(
            f"prefork: error: cannot import the cron jobs: {exc.__class__.__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if name not in jobs:
        print(f"no job named {name!r} is declared by {loaded.settings.cron_jobs or 'the app'}")
        return EXIT_FAILED
    runner = CronRunner(
        runtime.target.conninfo,
        loaded.settings,
        {name: jobs[name]},
        f"prefork cron run (pid {os.getpid()})",
        _Foreground(),
        lambda: False,
    )
    RequestLimits(cron_limits(loaded.settings)[1], 0).arm()  # the job's CPU limit, here too
    runner.sync(complete=False)  # registers this job if no worker has yet, touches no other
    conn.execute("UPDATE prefork.cron_job SET next_run = now() WHERE name = %s", (name,))
    try:
        runner.connect()
        ran = False
        while not ran and (claimed := runner.run_one()) is not None:
            ran = claimed == name  # other due jobs are left to the cron workers
    finally:
        runner.close()
    row = conn.execute(
        "SELECT last_status, last_duration FROM prefork.cron_job WHERE name = %s", (name,)
    ).fetchone()
    if not ran:
        print(f"{name}: not run here: a cron worker holds it or it is inactive")
        return EXIT_FAILED
    print(f"{name}: {row[0]} in {row[1]:.2f}s")
    return 0 if row[0] == "ok" else EXIT_FAILED


class _Foreground:
    """Hooks for a job run by the command itself: its limits stop this process."""

    def beat(self) -> None:
        pass

    def job_started(self, name: str) -> None:
        pass

    def job_finished(self, name: str) -> None:
        pass

    def progress(self, name: str, text: str) -> None:
        print(f"{name}: {text}", flush=True)

    def timed_out(self, name: str) -> None:
        logging.shutdown()
        os._exit(EXIT_FAILED)
