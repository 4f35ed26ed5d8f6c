"""The job of the multi-host test: every 3 s it records the slot it runs for in `slots`
(created by the test) with the host that ran it ($CLUSTER_HOST), then works for 2 s. While it
works, $SLOTJOBS_DIR/running-<host> holds the slot and the worker's pid, so that the test can
freeze the host mid-job; the row is committed with the job's transaction, at its end."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from prefork.cron import JobContext, cron

WORK = 2.0  # seconds: under the test's limit_time_real_cron (3)


@cron(every="3s", name="multihost.slot")
def record_slot(ctx: JobContext) -> None:
    host = os.environ["CLUSTER_HOST"]
    # While a run is in progress its job's next_run is the slot it runs: moved on at its end.
    slot = ctx.conn.execute(
        "SELECT next_run FROM prefork.cron_job WHERE name = %s", (ctx.name,)
    ).fetchone()[0]
    ctx.conn.execute(
        "INSERT INTO slots (slot, host, pid) VALUES (%s, %s, %s)", (slot, host, os.getpid())
    )
    marker = Path(os.environ["SLOTJOBS_DIR"]) / f"running-{host}"
    marker.write_text(json.dumps({"slot": slot.isoformat(), "pid": os.getpid()}))
    try:
        time.sleep(WORK)
    finally:
        marker.unlink()
