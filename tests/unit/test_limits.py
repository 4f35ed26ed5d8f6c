"""RequestLimits in-process: the per-request check skips its system call only while neither
limit can have been reached, and never misses a request that reached one."""

from __future__ import annotations

import resource
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from prefork.workers import limits
from prefork.workers.limits import RequestLimits


@pytest.fixture
def getrusage_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = resource.getrusage

    def counting(who: int) -> resource.struct_rusage:
        calls.append(who)
        return real(who)

    monkeypatch.setattr(resource, "getrusage", counting)
    return calls


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_far_limits_skip_the_system_call(getrusage_calls: list[int]) -> None:
    checker = RequestLimits(0, _peak() + (8 << 30))
    getrusage_calls.clear()
    checker.after_request()  # the first request is always measured
    assert len(getrusage_calls) == 1
    for _ in range(1000):
        assert checker.after_request() == 0
    assert len(getrusage_calls) == 1


def test_growth_that_could_reach_the_soft_limit_is_measured(getrusage_calls: list[int]) -> None:
    soft = _peak() + (16 << 20)
    checker = RequestLimits(0, soft)
    getrusage_calls.clear()
    assert checker.after_request() == 0
    time.sleep(0.001)  # 1 ms at MAX_RSS_GROWTH could add 64 MiB: must measure again
    # Zero-filled: resident at once. Sized from the current RSS, which earlier tests may have
    # left well below the peak: the peak must pass `soft`.
    ballast = bytearray(soft - psutil.Process().memory_info().rss + (16 << 20))
    rss = checker.after_request()
    assert len(getrusage_calls) >= 2
    assert rss >= soft
    del ballast


@pytest.fixture
def cpu_limit_restored() -> Iterator[None]:
    saved = resource.getrlimit(resource.RLIMIT_CPU)
    yield
    resource.setrlimit(resource.RLIMIT_CPU, saved)


@pytest.mark.usefixtures("cpu_limit_restored")
def test_cpu_budget_is_rearmed_in_time(getrusage_calls: list[int]) -> None:
    checker = RequestLimits(1, 0)
    checker.arm()
    checker.after_request()
    calls = len(getrusage_calls)
    deadline = time.monotonic() + 1.2  # more CPU than the margin left after arming
    while time.monotonic() < deadline:
        pass
    checker.after_request()
    assert len(getrusage_calls) > calls
    soft, _ = resource.getrlimit(resource.RLIMIT_CPU)
    used = time.process_time()
    assert soft - used >= 1  # the next request still gets its whole second


@pytest.fixture
def cpu_warning_disarmed() -> Iterator[None]:
    yield
    signal.setitimer(signal.ITIMER_PROF, 0)


@pytest.mark.usefixtures("cpu_limit_restored", "cpu_warning_disarmed")
def test_the_cpu_warning_comes_before_the_kill() -> None:
    """HTTP workers: SIGPROF at the budget (the request is answered), the kernel's SIGXCPU
    CPU_ANSWER_GRACE seconds later (the backstop); a cron worker's limit kills at once."""
    warned = RequestLimits(5, 0, warn=True)
    warned.arm()
    used = time.process_time()
    warning, interval = signal.getitimer(signal.ITIMER_PROF)
    soft, _ = resource.getrlimit(resource.RLIMIT_CPU)
    assert 5 <= warning <= 7 and interval == 0  # one shot: this request's budget
    assert abs(soft - (used + warning) - limits.CPU_ANSWER_GRACE) < 0.5
    signal.setitimer(signal.ITIMER_PROF, 0)
    RequestLimits(5, 0).arm()
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    soft, _ = resource.getrlimit(resource.RLIMIT_CPU)
    assert 5 <= soft - time.process_time() <= 7
