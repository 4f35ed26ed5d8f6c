"""The master's health monitor: exits counted by kind over a sliding window; a crash loop
or repeated limit kills raise an alert (an ERROR line with the reason and the last
traceback, the state file for `prefork status` and the dashboard, the webhook), which
clears when the count falls back under its threshold."""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from dataclasses import asdict, dataclass

from prefork.config import Settings
from prefork.ops.webhook import Webhook
from prefork.servers.exits import ExitReason, ExitRecord

log = logging.getLogger("prefork.master")

CRASHES = frozenset({ExitReason.CRASH, ExitReason.BOOT_FAILED, ExitReason.BOOT_TIMEOUT})
LIMIT_KILLS = frozenset(
    {ExitReason.MEMORY_HARD, ExitReason.REAL_TIME, ExitReason.CPU_TIME, ExitReason.CRON_TIMEOUT}
)


@dataclass(frozen=True)
class Alert:
    kind: str  # crash-loop, limit-kills
    count: int
    window: int
    reason: str  # the last exit's reason and detail
    traceback: str  # the last traceback recorded by a worker, if any
    raised_at: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class HealthMonitor:
    def __init__(self, window: int, crashes: int, limit_kills: int) -> None:
        self.window = window
        self.thresholds = {"crash-loop": crashes, "limit-kills": limit_kills}
        self._exits: dict[str, deque[ExitRecord]] = {kind: deque() for kind in self.thresholds}
        self.active: dict[str, Alert] = {}

    def record(self, exit_record: ExitRecord) -> list[tuple[str, Alert]]:
        """Count an exit; ("raised", alert) when it starts an alert."""
        kind = (
            "crash-loop"
            if exit_record.reason in CRASHES
            else "limit-kills"
            if exit_record.reason in LIMIT_KILLS
            else ""
        )
        if not kind or not self.thresholds[kind]:
            return []
        exits = self._exits[kind]
        exits.append(exit_record)
        self._forget(exits, exit_record.at)
        if kind in self.active or len(exits) < self.thresholds[kind]:
            return []
        last_error = next((e.error for e in reversed(exits) if e.error), "")
        alert = Alert(
            kind,
            len(exits),
            self.window,
            f"{exit_record.reason}: {exit_record.log_line()}",
            last_error,
            exit_record.at,
        )
        self.active[kind] = alert
        log.error(
            "ALERT %s: %d exits in %ds, last %s%s",
            kind,
            len(exits),
            self.window,
            alert.reason,
            f"\n{last_error.rstrip()}" if last_error else "",
        )
        return [("raised", alert)]

    def check(self, now: float) -> list[tuple[str, Alert]]:
        """("cleared", alert) for each alert whose exits left the window."""
        cleared = []
        for kind, alert in list(self.active.items()):
            exits = self._exits[kind]
            self._forget(exits, now)
            if len(exits) < self.thresholds[kind]:
                del self.active[kind]
                log.info(
                    "alert %s cleared: %d exit(s) in the last %ds", kind, len(exits), self.window
                )
                cleared.append(("cleared", alert))
        return cleared

    def _forget(self, exits: deque[ExitRecord], now: float) -> None:
        while exits and exits[0].at < now - self.window:
            exits.popleft()


class Alerts:
    """The master's alerts: the monitor's (crash loops, limit kills) and the embedded
    database's. Each one raised or cleared goes to the webhook, when one is set; the log
    line is the monitor's or the database supervisor's. The settings are the start's: a
    HUP does not change them."""

    def __init__(self, settings: Settings) -> None:
        self.monitor = HealthMonitor(
            settings.alert_window, settings.alert_crashes, settings.alert_limit_kills
        )
        self.webhook = Webhook(settings.alert_webhook) if settings.alert_webhook else None

    def send(self, events: list[tuple[str, Alert]]) -> None:
        if self.webhook is None:
            return
        for event, alert in events:
            payload = {"event": event, "server": socket.gethostname(), "master_pid": os.getpid()}
            self.webhook.send({**payload, **alert.as_dict()})

    def active(self, database: Alert | None) -> list[dict[str, object]]:
        """What the state file shows: the monitor's active alerts, then the database's."""
        alerts = [*self.monitor.active.values(), *([database] if database else [])]
        return [alert.as_dict() for alert in alerts]
