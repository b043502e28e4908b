"""Snakemake's scheduler as this workflow runs it: one pending wake-up at a time.

Snakemake 9's job scheduler (``snakemake.scheduling.job_scheduler.JobScheduler``) ends every pass of its
loop by starting a ``threading.Timer`` that wakes the loop again after the job-rate timespan
(``--max-jobs-per-timespan``, by default 100 jobs per second). Each wake-up is a pass, and each pass starts
another timer, so every other wake-up (a job that finishes, a job that starts) adds one more chain of timers
that never ends: after n jobs the loop runs about n times a second, and each pass takes the size of every
input of every job that is ready to run. On the tiny test cohort (194 jobs, 310 s under cProfile) the loop
made 19,974 passes; upstream the same growth makes long runs fail for want of threads (snakemake/snakemake#3804).

:func:`coalesce_wakeups` keeps at most one timer pending per scheduler. The loop still wakes within one
timespan of any pass, as the job-rate limit needs, and at once when a job ends, as before. Its timer is a
daemon thread, so Snakemake no longer waits for the last timer when the run is over. The Snakefile calls it
at parse time, before Snakemake makes its scheduler (also in the Snakemake a cluster job runs).
"""

from __future__ import annotations

import threading


def one_pending_wakeup(scheduler, delay: float) -> None:
    """Release ``scheduler._open_jobs`` once after ``delay`` seconds, unless a release is already pending
    (then that one serves). Replaces ``JobScheduler._schedule_reevalutation``."""
    lock = scheduler.__dict__.setdefault("_braindl_wakeup_lock", threading.Lock())
    with lock:
        if scheduler.__dict__.get("_braindl_wakeup_pending"):
            return
        scheduler._braindl_wakeup_pending = True

    def wake():
        with lock:
            scheduler._braindl_wakeup_pending = False
        scheduler._open_jobs.release()

    timer = threading.Timer(delay, wake)
    timer.daemon = True
    timer.start()


def coalesce_wakeups(scheduler_class=None) -> bool:
    """Give Snakemake's ``JobScheduler`` (or ``scheduler_class``) :func:`one_pending_wakeup` as its
    ``_schedule_reevalutation``. Returns whether it now has it: False where the class has no such method
    (another Snakemake), which is then left as it is."""
    if scheduler_class is None:
        try:
            from snakemake.scheduling.job_scheduler import JobScheduler as scheduler_class
        except ImportError:
            return False
    if not hasattr(scheduler_class, "_schedule_reevalutation"):
        return False
    scheduler_class._schedule_reevalutation = one_pending_wakeup
    return True
