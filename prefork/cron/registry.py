"""Jobs declared in code with @cron, collected when their modules are imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefork.cron.schedule import Schedule

JobFunction = Callable[[Any], Any]


@dataclass(frozen=True)
class Job:
    name: str
    schedule: Schedule
    function: JobFunction
    priority: int = 10


REGISTRY: dict[str, Job] = {}


def cron(
    expression: str = "", *, every: str = "", name: str = "", priority: int = 10
) -> Callable[[JobFunction], JobFunction]:
    """Declare a scheduled job: @cron("*/5 * * * *") or @cron(every="10m").

    The function receives a JobContext: `ctx.conn` (a connection in the job's transaction,
    committed when the function returns, rolled back when it raises), `ctx.log` and
    `ctx.progress(text)`. Lower priority numbers run first when several jobs are due.
    """
    schedule = Schedule.parse(expression, every)

    def declare(function: JobFunction) -> JobFunction:
        job_name = name or f"{function.__module__}.{function.__qualname__}"
        existing = REGISTRY.get(job_name)
        if existing is not None and existing.function is not function:
            raise ValueError(f"two cron jobs are named {job_name!r}")
        REGISTRY[job_name] = Job(job_name, schedule, function, priority)
        return function

    return declare
