"""The host registry's arithmetic: hosts each over the connection limit are over it
together."""

from __future__ import annotations

from prefork.db.cluster import budget_warning
from prefork.db.hosts import HostInfo


def test_hosts_over_the_limit_each_are_also_over_it_together() -> None:
    def host(port: int, connections: int) -> HostInfo:
        return HostInfo(
            "web",
            port,
            1,
            "0.1.0",
            "multiprocessing",
            8072,
            "redis",
            "r:6379/0",
            "ab" * 8,
            connections,
        )

    # Each alone can open 199 of 97: the cluster's line is still given (status, dashboard).
    warning = budget_warning(host(1, 199), [host(2, 199)], 100, 3)
    assert warning is not None and "can open 398 connections together" in warning
    assert budget_warning(host(1, 40), [host(2, 40)], 100, 3) is None
    assert budget_warning(host(1, 199), [], 100, 3) is None  # one host: capacity's warning
