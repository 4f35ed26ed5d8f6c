"""The accept pacer, without sockets."""

from __future__ import annotations

import time

from prefork.http.pacing import ACCEPT_DEFER, BUSY_BATCH, FRESH_WINDOW, AcceptPacer


def test_an_idle_worker_accepts_at_once() -> None:
    pacer = AcceptPacer()
    assert pacer.accept_quota(just_served=False) == 1, "idle: one, the rest to the others"
    assert pacer.paused_for(time.monotonic()) == 0


def test_a_busy_worker_defers_then_accepts_itself() -> None:
    pacer = AcceptPacer()
    assert pacer.accept_quota(just_served=True) == 0
    time.sleep(ACCEPT_DEFER * 2)
    assert pacer.accept_quota(just_served=True) == BUSY_BATCH, "all busy: take a batch"
    assert pacer.accept_quota(just_served=True) == 0, "a new deferral starts"
    pacer.nothing_pending()
    assert pacer.accept_quota(just_served=True) == 0


def test_a_silent_new_connection_pauses_accepting_for_a_bounded_time() -> None:
    pacer = AcceptPacer()
    now = time.monotonic()
    pacer.accepted_silent("conn", now)
    assert 0 < pacer.paused_for(now) <= FRESH_WINDOW + 1e-9
    assert pacer.paused_for(now + FRESH_WINDOW + 1e-6) == 0, "slow clients must not starve"
    pacer.accepted_silent("other", now)
    pacer.heard_from("other")
    assert pacer.paused_for(now) == 0
