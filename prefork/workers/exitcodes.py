"""How a worker tells the master why it exited, and the reasons the master records."""

from __future__ import annotations

STOPPED = 0  # asked to stop (TERM), or a reload replaced it
CRASHED = 1  # an exception escaped the worker loop; traceback in the slot
BOOT_FAILED = 3  # the application could not be loaded; message in the slot
MEMORY_SOFT = 10  # RSS above limit_memory_soft after a request; RSS in the slot
REQUEST_LIMIT = 11  # served limit_request (+ jitter) requests
MEMORY_HARD = 12  # an allocation failed under the kernel backstop (RLIMIT_AS)
ORPHANED = 13  # the master went away
CRON_TIMEOUT = 14  # a cron job ran past limit_time_real_cron (already recorded as such)
# Stopped the request at a limit and answered its client (the master's order, when it gave
# one, has the measured value):
CPU_TIME = 15  # limit_time_cpu: SIGPROF at the request's CPU budget
REAL_TIME = 16  # limit_time_real: the master's SIGUSR1
MEMORY_RSS = 17  # limit_memory_hard: the master's SIGUSR1
CRON_LIFETIME = 18  # a cron worker lived limit_time_worker_cron seconds (between two jobs)
