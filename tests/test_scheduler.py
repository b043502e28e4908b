"""braindl.scheduler: Snakemake's scheduler with one pending wake-up at a time."""

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from braindl import scheduler

REPO = Path(__file__).resolve().parents[1]


class _Loop:
    """What the wake-up touches of a Snakemake scheduler: the semaphore its loop waits on."""

    def __init__(self):
        self._open_jobs = threading.Semaphore(0)

    def releases(self):
        n = 0
        while self._open_jobs.acquire(blocking=False):
            n += 1
        return n


def test_many_wakeups_asked_at_once_release_the_loop_once_from_a_daemon_timer():
    loop = _Loop()
    before = set(threading.enumerate())
    for _ in range(50):
        scheduler.one_pending_wakeup(loop, 0.2)
    timers = [t for t in set(threading.enumerate()) - before if isinstance(t, threading.Timer)]
    assert len(timers) == 1 and timers[0].daemon  # a finished run does not wait for it
    assert loop.releases() == 0  # not before the delay
    time.sleep(0.5)
    assert loop.releases() == 1
    # once it has fired, the next pass of the loop can ask again
    scheduler.one_pending_wakeup(loop, 0.05)
    time.sleep(0.3)
    assert loop.releases() == 1


def test_coalesce_replaces_snakemakes_method_once_and_leaves_other_classes():
    from snakemake.scheduling.job_scheduler import JobScheduler

    assert scheduler.coalesce_wakeups() and scheduler.coalesce_wakeups()
    assert JobScheduler._schedule_reevalutation is scheduler.one_pending_wakeup

    class Other:
        def run(self):
            pass

    assert not scheduler.coalesce_wakeups(Other) and not hasattr(Other, "_schedule_reevalutation")


def _passes(tmp_path, coalesce):
    """Passes of Snakemake's scheduler loop over 60 jobs of 0.3 s on 2 cores (its debug log counts them)."""
    wd = tmp_path / ("fixed" if coalesce else "plain")
    wd.mkdir()
    call = f"sys.path.insert(0, {str(REPO)!r})\nfrom braindl.scheduler import coalesce_wakeups\ncoalesce_wakeups()\n"
    (wd / "Snakefile").write_text("import sys\n" + (call if coalesce else "") + textwrap.dedent("""
        rule all:
            input: expand("out/{i}.txt", i=range(60))
        rule one:
            output: "out/{i}.txt"
            shell: "sleep 0.3; touch {output}"
        """))
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--verbose"], cwd=wd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return (out.stdout + out.stderr).count("Resources before job selection")


@pytest.mark.slow
def test_snakemake_passes_grow_with_the_jobs_unless_coalesced(tmp_path):
    """Snakemake 9.27's loop passes multiply with the jobs it has run (one more timer chain per job event);
    with the Snakefile's call, a pass per job start and end and per second remains. Should an upgrade of
    Snakemake stop the growth, the plain count falls and this test says so: braindl.scheduler can go."""
    fixed, plain = _passes(tmp_path, True), _passes(tmp_path, False)
    assert fixed <= 2 * 60 + 20, fixed  # a pass per job start and end, and per second (30 pairs: 9 s)
    assert plain > 3 * fixed, (plain, fixed)
