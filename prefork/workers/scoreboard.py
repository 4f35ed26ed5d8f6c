"""Shared memory between the master and its workers: one fixed-size slot per worker.

The master maps it before forking, so every worker writes its own slot and the master reads
them all without a system call: the heartbeat of the worker's own loop, when the current
request started and its request line, how many requests it served, its state, and the
measured value or error text that explains its exit, how many client connections it holds,
and how many bytes of responses it keeps for how many clients that read slowly.

Each field is written by one process only (the worker, except `pid` and `state` FREE/BOOTING,
written by the master before the fork, and two written by the master only: the shed request,
a count and a sequence number the worker compares with the last one it acted on, and the
limit the master stops the worker's request for, written before its SIGUSR1). After the
slots, one word for every process, written by the master alone: whether the server is
draining (a stop announced to load balancers, prefork.config drain_delay). Reads are
not atomic across fields; a torn read costs one tick of the watchdog at most, because every
decision is re-checked on the next.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

# RETIRING: a worker that reached limit_request and serves on until the master has its
# replacement ready, then stops it (the master does not count it among the workers).
FREE, BOOTING, READY, STOPPING, RETIRING = range(5)
# The limit named by the master's SIGUSR1 (none: a stray signal).
NO_LIMIT, REAL_TIME_LIMIT, MEMORY_LIMIT = range(3)

# pid, state, heartbeat, value, connections, shed count, shed seq, requests, request_started;
# the request line follows: a request's start (its time and line) and its end (the count
# and a zero start) are each written with one pack_into, on every request.
_HEAD = struct.Struct("=iidqiiqqd")
_LINE_SIZE = 256
_ERROR_SIZE = 2048
_LIMIT_SIZE = 8  # an int, in room that keeps every slot's doubles 8-byte aligned
_SENDING = struct.Struct("=qq")  # bytes kept for slow readers, how many such clients
SLOT_SIZE = _HEAD.size + 2 * _LINE_SIZE + _ERROR_SIZE + _LIMIT_SIZE + _SENDING.size
MAX_SLOTS = 512

_OFF_PID, _OFF_STATE, _OFF_BEAT, _OFF_VALUE, _OFF_CONNECTIONS, _OFF_SHED = 0, 4, 8, 16, 24, 28
_OFF_REQUESTS, _OFF_STARTED = 40, 48
_SHED = struct.Struct("=iq")  # how many idle connections to hand over, request number
_OFF_LINE = _HEAD.size
_OFF_EXIT_LINE = _OFF_LINE + _LINE_SIZE
_OFF_ERROR = _OFF_EXIT_LINE + _LINE_SIZE
_OFF_LIMIT = _OFF_ERROR + _ERROR_SIZE
_OFF_SENDING = _OFF_LIMIT + _LIMIT_SIZE
# The start time and the line; one byte short of the line's room, so a NUL always ends it.
_BEGIN = struct.Struct(f"=d{_LINE_SIZE - 1}s")
_LINE = struct.Struct(f"{_LINE_SIZE - 1}s")
_END = struct.Struct("=qd")  # requests served, a zero start time
_INT = struct.Struct("=i")
_DOUBLE = struct.Struct("=d")
_LONG = struct.Struct("=q")
_SHARED_SIZE = 8  # the word after the slots: draining (0 or 1)


@dataclass(frozen=True)
class SlotView:
    pid: int
    state: int
    heartbeat: float
    request_started: float
    requests: int
    value: int
    connections: int
    request_line: str
    exit_line: str
    error: str
    sending_bytes: int = 0
    sending_clients: int = 0


class Slot:
    """One worker's slot; the worker holds it for its lifetime."""

    __slots__ = ("_base", "_mem", "_shared", "begin_request", "end_request", "index")

    def __init__(self, mem: mmap.mmap, index: int) -> None:
        self._mem = mem
        self.index = index
        self._base = index * SLOT_SIZE
        self._shared = len(mem) - _SHARED_SIZE
        # A request's start and end, written on every request: C calls, no Python frame.
        # begin_request(now, request line in latin-1: cut or padded with NULs)
        self.begin_request: Callable[[float, bytes], None] = partial(
            _BEGIN.pack_into, mem, self._base + _OFF_STARTED
        )
        # end_request(requests served, 0.0: the zero start time that says none is running)
        self.end_request: Callable[[int, float], None] = partial(
            _END.pack_into, mem, self._base + _OFF_REQUESTS
        )

    def reset(self, pid: int) -> None:
        self._mem[self._base : self._base + SLOT_SIZE] = bytes(SLOT_SIZE)
        _HEAD.pack_into(self._mem, self._base, pid, BOOTING, 0.0, 0, 0, 0, 0, 0, 0.0)

    def set_pid(self, pid: int) -> None:
        _INT.pack_into(self._mem, self._base + _OFF_PID, pid)

    def set_state(self, state: int) -> None:
        _INT.pack_into(self._mem, self._base + _OFF_STATE, state)

    def beat(self, now: float) -> None:
        _DOUBLE.pack_into(self._mem, self._base + _OFF_BEAT, now)

    def set_line(self, line: str) -> None:
        """What the worker is doing (the request line, the cron job and its progress)."""
        _LINE.pack_into(self._mem, self._base + _OFF_LINE, line.encode("latin-1", "replace"))

    def set_connections(self, count: int) -> None:
        _INT.pack_into(self._mem, self._base + _OFF_CONNECTIONS, count)

    def set_sending(self, held: int, clients: int) -> None:
        """Bytes of responses kept for clients that read slowly, and how many clients."""
        _SENDING.pack_into(self._mem, self._base + _OFF_SENDING, held, clients)

    def request_shed(self, count: int) -> None:
        """Master side: ask the worker to hand `count` idle connections over."""
        _, seq = _SHED.unpack_from(self._mem, self._base + _OFF_SHED)
        _SHED.pack_into(self._mem, self._base + _OFF_SHED, count, seq + 1)

    def shed_request(self) -> tuple[int, int]:
        """Worker side: (count, sequence number) of the master's latest shed request."""
        count, seq = _SHED.unpack_from(self._mem, self._base + _OFF_SHED)
        return count, seq

    def order_stop(self, limit: int) -> None:
        """Master side: the limit its next SIGUSR1 stops the worker's request for."""
        _INT.pack_into(self._mem, self._base + _OFF_LIMIT, limit)

    def stop_order(self) -> int:
        """Worker side, in its SIGUSR1 handler: the limit the master named."""
        limit: int = _INT.unpack_from(self._mem, self._base + _OFF_LIMIT)[0]
        return limit

    def draining(self) -> bool:
        """Worker side: the master announces its stop (Scoreboard.set_draining)."""
        return bool(_INT.unpack_from(self._mem, self._shared)[0])

    def set_value(self, value: int) -> None:
        _LONG.pack_into(self._mem, self._base + _OFF_VALUE, value)

    def mark_exit(self, value: int) -> None:
        """Keep the measured value and the request that decided this worker's exit."""
        self.set_value(value)
        line = self._base + _OFF_LINE
        exit_line = self._base + _OFF_EXIT_LINE
        self._mem[exit_line : exit_line + _LINE_SIZE] = self._mem[line : line + _LINE_SIZE]

    def set_error(self, text: str) -> None:
        raw = text.encode("utf-8", "replace")[-(_ERROR_SIZE - 1) :]
        start = self._base + _OFF_ERROR
        self._mem[start : start + len(raw) + 1] = raw + b"\0"

    def read(self) -> SlotView:
        pid, state, beat, value, connections, _, _, requests, started = _HEAD.unpack_from(
            self._mem, self._base
        )
        held, clients = _SENDING.unpack_from(self._mem, self._base + _OFF_SENDING)
        return SlotView(
            pid,
            state,
            beat,
            started,
            requests,
            value,
            connections,
            _cstring(self._mem, self._base + _OFF_LINE, _LINE_SIZE),
            _cstring(self._mem, self._base + _OFF_EXIT_LINE, _LINE_SIZE),
            _cstring(self._mem, self._base + _OFF_ERROR, _ERROR_SIZE),
            held,
            clients,
        )


def _cstring(mem: mmap.mmap, start: int, size: int) -> str:
    raw = mem[start : start + size]
    return raw[: raw.find(b"\0") if b"\0" in raw else size].decode("utf-8", "replace")


class Scoreboard:
    """All slots, mapped shared and anonymous: visible to every process forked after it."""

    def __init__(self, slots: int = MAX_SLOTS) -> None:
        self._mem = mmap.mmap(-1, slots * SLOT_SIZE + _SHARED_SIZE, flags=mmap.MAP_SHARED)
        self._free = list(range(slots - 1, -1, -1))

    def acquire(self, pid: int = 0) -> Slot:
        if not self._free:
            raise RuntimeError("no free worker slot")
        slot = Slot(self._mem, self._free.pop())
        slot.reset(pid)
        return slot

    def set_draining(self) -> None:
        """Master side: from now on every worker's /web/health answers 'draining'; never
        cleared, the stop that follows ends the processes."""
        _INT.pack_into(self._mem, len(self._mem) - _SHARED_SIZE, 1)

    def release(self, slot: Slot) -> None:
        slot.set_state(FREE)
        self._free.append(slot.index)
