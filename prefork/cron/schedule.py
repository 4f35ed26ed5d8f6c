"""When a job runs: a cron expression (croniter) or a fixed interval, always in UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import CroniterBadCronError, croniter

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY_RE = re.compile(r"(\d+)\s*([smhd])")


class ScheduleError(ValueError):
    """A cron expression or interval that cannot be understood."""


@dataclass(frozen=True)
class Schedule:
    expression: str = ""  # five-field cron expression, or
    interval: int = 0  # seconds between runs

    @classmethod
    def parse(cls, expression: str = "", every: str = "") -> Schedule:
        if bool(expression) == bool(every):
            raise ScheduleError("give either a cron expression or every='10m', not both")
        if every:
            return cls(interval=_seconds(every))
        if not croniter.is_valid(expression):
            raise ScheduleError(f"invalid cron expression {expression!r}")
        return cls(expression=expression)

    def __str__(self) -> str:
        return self.expression or f"every {self.interval}s"

    @classmethod
    def from_text(cls, text: str) -> Schedule:
        """The inverse of str(): what the database stores."""
        if text.startswith("every "):
            return cls(interval=int(text[6:-1]))
        return cls(expression=text)

    def next_after(self, moment: datetime) -> datetime:
        """The first slot strictly after `moment`."""
        if self.interval:
            return moment + timedelta(seconds=self.interval)
        try:
            result: datetime = croniter(self.expression, moment).get_next(datetime)
        except CroniterBadCronError as exc:
            raise ScheduleError(str(exc)) from None
        return result

    def next_slot(self, slot: datetime, now: datetime, catch_up: bool) -> datetime:
        """The slot after `slot`. Without catch_up, slots already past are skipped: a
        server that was down runs a job once, not once per missed slot."""
        following = self.next_after(slot)
        if catch_up or following > now:
            return following
        if self.interval:
            missed = int((now - slot).total_seconds() // self.interval)
            return slot + timedelta(seconds=self.interval * (missed + 1))
        return self.next_after(now)


def _seconds(every: str) -> int:
    total, position = 0, 0
    text = every.replace(" ", "")
    for match in _EVERY_RE.finditer(text):
        if match.start() != position:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or not total:
        raise ScheduleError(f"invalid interval {every!r}: expected e.g. '30s', '10m', '1h30m'")
    return total
