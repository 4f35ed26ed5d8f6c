"""What `check` and `run --stop-after-init` import, as the processes that run it would:
the application (HTTP workers), the job modules (cron workers) and the realtime hooks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from prefork.config import Settings
from prefork.usercode import UserImportError


def import_problems(settings: Settings) -> list[str]:
    """One line per piece of the user's code that cannot be imported (empty: all loaded)."""
    from prefork.cron.runner import job_modules, load_jobs
    from prefork.wsgi.loader import DEMO_APP, load_app, load_callable

    steps: list[tuple[str, str, Callable[[], object]]] = [
        ("app", settings.app or DEMO_APP, partial(load_app, settings.app))
    ]
    if settings.max_cron_threads:
        what, modules = job_modules(settings)
        steps.append((what, ", ".join(modules), partial(load_jobs, settings)))
    for hook in ("bus_auth", "bus_channels"):
        ref = getattr(settings, hook)
        if ref:
            steps.append((hook, ref, partial(load_callable, ref, hook)))
    problems: list[str] = []
    for what, ref, step in steps:
        if problems and what == "app":  # the jobs are the app's module: said once
            continue
        try:
            step()
        except UserImportError as exc:
            problems.append(str(exc))
        except Exception as exc:  # the user's module raised while it was imported
            first = (str(exc).splitlines() or [""])[0]
            problems.append(f"{what} {ref!r}: importing it raised {type(exc).__name__}: {first}")
    return problems
