"""Connection balancing: how the master spreads keep-alive clients over the HTTP workers.

A worker hands over the idle clients it should not keep (it is retiring, stopping, in a
long request, or was asked to shed some); they wait in the parking (servers/parking.py)
until a worker is placed to serve them. Every BALANCE_INTERVAL the worker holding the
most clients is asked to shed some when another holds BALANCE_SPREAD fewer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prefork.servers.kinds import HTTP
from prefork.servers.parking import Candidate, Parking
from prefork.servers.worker_proc import WorkerProc
from prefork.workers.handoff import receive_connections
from prefork.workers.http import REBALANCE_AFTER
from prefork.workers.scoreboard import READY, SlotView

BALANCE_INTERVAL = 0.1  # seconds between two looks at how clients spread over the workers
BALANCE_SPREAD = 2  # connections more than the least loaded worker before handing some over


class Balancer:
    def __init__(self, parking: Parking) -> None:
        self.parking = parking
        self.next_balance = 0.0

    def receive(self, worker: WorkerProc, stopping: bool) -> bool:
        """Park what the worker handed over (close it when the server is stopping); False
        once the worker has closed its end of the channel."""
        if worker.channel.fileno() < 0:
            return True
        received, closed = receive_connections(worker.channel)
        for handed in received:
            if stopping:
                handed.sock.close()
            else:
                self.parking.park(handed)
        return not closed

    def dispatch(self, workers: Iterable[WorkerProc], generation: int, now: float) -> None:
        """Parked clients past the keep-alive timeout closed, the others to idle workers."""
        self.parking.expire(now)
        self.parking.dispatch(idle_channels(workers, generation, now))

    def balance(self, workers: Iterable[WorkerProc], generation: int, now: float) -> None:
        """Workers in a long request take no part: they hand their clients over by
        themselves."""
        if now < self.next_balance or self.parking.waiting:
            return
        self.next_balance = now + BALANCE_INTERVAL
        shed = shedding(
            [
                (view.connections, worker)
                for worker, view in available_http_workers(workers, generation, now)
            ]
        )
        if shed is not None:
            worker, count = shed
            worker.slot.request_shed(count)


def shedding(loads: list[tuple[int, WorkerProc]]) -> tuple[WorkerProc, int] | None:
    """The worker holding the most clients and how many it should hand over (half the
    difference to the least loaded: the parking gives them to it), if any should."""
    if len(loads) < 2:
        return None
    most, heaviest = max(loads, key=lambda load: load[0])
    fewest = min(count for count, _ in loads)
    if most - fewest < BALANCE_SPREAD:
        return None
    return heaviest, (most - fewest) // 2


def idle_channels(workers: Iterable[WorkerProc], generation: int, now: float) -> list[Candidate]:
    """The current workers best placed to serve a parked client now, with how many
    connections each holds.

    Idle workers first; when none is idle at this instant (a busy server), those whose
    request started less than REBALANCE_AFTER ago: they take the connection as soon as
    it ends. A worker deep in a long request is never given one.
    """
    idle: list[Candidate] = []
    short: list[Candidate] = []
    for worker, view in available_http_workers(workers, generation, now):
        candidate = Candidate(worker.channel, view.connections)
        (short if view.request_started else idle).append(candidate)
    return idle or short


def available_http_workers(
    workers: Iterable[WorkerProc], generation: int, now: float
) -> Iterator[tuple[WorkerProc, SlotView]]:
    """Ready HTTP workers of `generation` not deep in a long request."""
    for worker in workers:
        if worker.terminating or worker.generation != generation or worker.kind is not HTTP:
            continue
        view = worker.slot.read()
        if view.state == READY and (
            not view.request_started or now - view.request_started < REBALANCE_AFTER
        ):
            yield worker, view
